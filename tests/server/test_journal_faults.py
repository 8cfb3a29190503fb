"""A failing start journal never costs a second run: locked, read-only, full, unreadable, and after restarts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from mogplex_mcp.emulator import running_emulator
from mogplex_mcp.server.state import AppState
from tests.e2e.support import server_env
from tests.server.harness import MODES, Mode, Session, session
from tests.server.journal_faults import (
    JOURNAL_UNAVAILABLE,
    REPO_ID,
    RUNS,
    STORM_UPSTREAM,
    assert_one_run_per_logical_start,
    damaged_copies,
    full_disk_server,
    holding_open,
    integrity,
    journal_path,
    locked,
    read_only,
    smash_index,
    storm,
)

pytestmark = pytest.mark.anyio

# Fast enough for a storm: a claim waits 50 ms for a stuck writer; a fault surfaces at once (no retry inside).
FAST_JOURNAL: dict[str, Any] = {"journal_wait_seconds": 0.05, "max_retries": 0}
LOGICAL = 260  # x 4 calls or more each: over 1,000 start_run calls per failure


async def _warm_up(s: Session, prompt: str = "Warm-up start") -> dict[str, Any]:
    """One start while the journal works: the file and its tables exist, as on a server that ran a while."""
    return await s.ok("start_run", repoId=REPO_ID, prompt=prompt)


async def test_a_locked_journal_never_makes_a_second_run(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", config=STORM_UPSTREAM, **FAST_JOURNAL) as s:
        await _warm_up(s)
        with locked(journal_path(s.settings.state_dir)):
            result = await storm(lambda args: s.call("start_run", **args), s.emulator.emulator, logical=LOGICAL)
            assert s.state.journal.claims_in_memory >= LOGICAL  # the fallback did the work
    assert result.calls >= 1000 and result.refused == 0
    assert result.failed_calls > 50  # the faults really hit
    emu = s.emulator.emulator
    result.runs[-1] = {emu.run_ids()[0]}  # the warm-up's run
    assert_one_run_per_logical_start(result, emu, LOGICAL + 1)


async def test_a_read_only_journal_after_a_restart_never_makes_a_second_run(tmp_path: Path) -> None:
    async with running_emulator(STORM_UPSTREAM) as emu:
        async with session(tmp_path, "legacy", emulator=emu, **FAST_JOURNAL) as s:
            before = await _warm_up(s)
        journal = journal_path(s.settings.state_dir)
        with read_only(journal):
            async with session(tmp_path, "auto", emulator=emu, **FAST_JOURNAL) as s:
                again = await _warm_up(s)  # the earlier claim is read from the read-only file
                result = await storm(lambda args: s.call("start_run", **args), emu.emulator, logical=LOGICAL)
                assert s.state.journal.claims_in_memory >= LOGICAL
        assert again["replayed"] is True and again["run"]["runId"] == before["run"]["runId"]
        assert result.calls >= 1000 and result.refused == 0
        result.runs[-1] = {before["run"]["runId"]}
        assert_one_run_per_logical_start(result, emu.emulator, LOGICAL + 1)


async def test_a_full_disk_never_makes_a_second_run(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    errlog = tmp_path / "stderr.txt"
    async with running_emulator(STORM_UPSTREAM) as emu:
        env = server_env(
            emu.base_url, state_dir, emu.token, MOGPLEX_JOURNAL_WAIT_SECONDS="0.05", MOGPLEX_MAX_RETRIES="0"
        )
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        command, failure = full_disk_server(state_dir)
        params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(Path.cwd()))
        with errlog.open("w") as sink:
            async with Client(stdio_client(params, errlog=sink), mode="legacy") as client:
                result = await storm(lambda args: client.call_tool("start_run", args), emu.emulator, logical=LOGICAL)
        assert result.calls >= 1000 and result.refused == 0
        assert_one_run_per_logical_start(result, emu.emulator, LOGICAL)
    logged = errlog.read_text()
    assert f"({failure}); start claims are held in this process" in logged  # the disk really filled up


@pytest.mark.parametrize("mode", MODES)
async def test_a_restart_while_the_journal_is_locked_replays_the_earlier_start(tmp_path: Path, mode: Mode) -> None:
    # The restarted server cannot write the file, but it reads it: the earlier process's claim still counts.
    async with running_emulator(STORM_UPSTREAM) as emu:
        async with session(tmp_path, mode, emulator=emu, **FAST_JOURNAL) as s:
            first = await _warm_up(s, "Fix the flaky test")
        with locked(journal_path(s.settings.state_dir)):
            async with session(tmp_path, mode, emulator=emu, **FAST_JOURNAL) as s:
                again = await _warm_up(s, "Fix the flaky test")
                during = await _warm_up(s, "Started while the file was locked")
                retried = await _warm_up(s, "Started while the file was locked")
                assert s.state.journal.persistent  # the locked file was opened, not swapped for memory
    assert again["replayed"] and again["run"]["runId"] == first["run"]["runId"]
    assert not during["replayed"] and retried["replayed"]
    assert retried["run"]["runId"] == during["run"]["runId"]
    assert len(emu.emulator.run_ids()) == 2


async def test_a_key_claimed_in_memory_is_reused_after_the_journal_recovers(tmp_path: Path) -> None:
    async with running_emulator(STORM_UPSTREAM) as handle:
        emu = handle.emulator
        async with session(tmp_path, "legacy", emulator=handle, **FAST_JOURNAL) as s:
            await _warm_up(s)
            with locked(journal_path(s.settings.state_dir)):
                emu.inject_fault("drop_after_commit", count=1, method="POST", path=RUNS)
                message = await s.error("start_run", repoId=REPO_ID, prompt="Claimed during the outage")
            assert JOURNAL_UNAVAILABLE not in message
            retried = await s.ok("start_run", repoId=REPO_ID, prompt="Claimed during the outage")
            assert retried["replayed"] is True
            assert len(emu.run_ids()) == 2
        # Shutting down wrote the memory claim through to the file, so a restarted server reuses it as well.
        async with session(tmp_path, "legacy", emulator=handle, **FAST_JOURNAL) as s2:
            restarted = await s2.ok("start_run", repoId=REPO_ID, prompt="Claimed during the outage")
    assert restarted["replayed"] is True and restarted["run"]["runId"] == retried["run"]["runId"]
    assert len(emu.run_ids()) == 2


async def test_a_damaged_journal_heals_and_a_real_server_lists_and_starts(tmp_path: Path) -> None:
    async with running_emulator(STORM_UPSTREAM) as emu:
        async with session(tmp_path, "legacy", emulator=emu, **FAST_JOURNAL) as s:
            earlier = [(await _warm_up(s, f"Before the damage {i}"))["run"]["runId"] for i in range(3)]
        journal = journal_path(s.settings.state_dir)
        smash_index(journal)  # integrity_check fails; the table itself still reads
        errlog = tmp_path / "stderr.txt"
        env = {**server_env(emu.base_url, s.settings.state_dir, emu.token), "PATH": os.environ.get("PATH", "")}
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mogplex_mcp", "serve"], env=env, cwd=str(Path.cwd())
        )
        with errlog.open("w") as sink:
            async with Client(stdio_client(params, errlog=sink), mode="legacy") as client:
                listed = await client.call_tool("list_runs", {})
                started = await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": "After the damage"})
                again = await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": "After the damage"})
        assert not listed.is_error and listed.structured_content is not None
        assert {run["runId"] for run in listed.structured_content["runs"]} == set(earlier)  # kept from the old file
        assert not started.is_error and not again.is_error
        assert again.structured_content is not None and again.structured_content["replayed"] is True
        assert len(emu.emulator.run_ids()) == 4
    (aside,) = damaged_copies(journal)
    logged = errlog.read_text()
    assert f"start journal {journal} was damaged" in logged and f"moved it to {aside}" in logged
    assert integrity(journal) == ["ok"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_journal_another_process_holds_is_never_read_as_empty(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(STORM_UPSTREAM) as emu:
        async with session(tmp_path, mode, emulator=emu, **FAST_JOURNAL) as s:
            await _warm_up(s)
        journal = journal_path(s.settings.state_dir)
        smash_index(journal)
        with holding_open(journal):  # another server still has it open: it cannot be moved from under it
            async with session(tmp_path, mode, emulator=emu, **FAST_JOURNAL) as s:
                message = await s.error("start_run", repoId=REPO_ID, prompt="Refuse me")
                listed = await s.error("list_runs")
                with pytest.raises(MCPError) as resources:
                    await s.client.list_resources()
                posts = emu.emulator.request_count("POST", RUNS)
                explicit = await s.ok("start_run", repoId=REPO_ID, prompt="Keyed", idempotencyKey="chosen-by-caller-1")
    assert JOURNAL_UNAVAILABLE in message and "damaged" in message and "idempotencyKey" in message
    assert "still have it open" in message and "Retry" not in message  # retrying alone would not help
    assert posts == 1  # only the warm-up: the refused start sent nothing
    assert explicit["idempotencyKey"] == "chosen-by-caller-1"
    for text in (listed, str(resources.value)):
        assert "runs list could not be read" in text and "not an empty list" in text and "damaged" in text
        assert "No runs seen" not in text
    assert damaged_copies(journal) == []


async def test_reads_never_wait_behind_a_locked_journal(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", config=STORM_UPSTREAM, **FAST_JOURNAL) as s:
        runs = [(await _warm_up(s, f"Run {i}"))["run"]["runId"] for i in range(8)]
        state: AppState = s.state
        state._remembered.clear()  # so every get_run below has bookkeeping to do
        before = state.journal.skipped_bookkeeping
        with locked(journal_path(s.settings.state_dir)):
            results: list[dict[str, Any]] = []

            async def read(run_id: str) -> None:
                results.append(await s.ok("get_run", runId=run_id))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for run_id in runs:
                        tg.start_soon(read, run_id)
        assert sorted(r["run"]["runId"] for r in results) == sorted(runs)
        # At least one per get_run: a followed run finishing meanwhile records its outcome, which gives up too.
        assert state.journal.skipped_bookkeeping - before >= 8, "each get_run gave up its bookkeeping"
