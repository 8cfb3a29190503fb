"""A retried start_run never starts a second run: same arguments, dropped connections, restarts."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/mogplex/runs"


@pytest.mark.parametrize("mode", MODES)
async def test_repeating_the_same_start_replays_instead_of_starting_again(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        first = await s.start("Add input validation to the signup form")
        again = await s.start("  Add input validation to the signup form  ")  # trimmed: the same request
        assert again["run"]["runId"] == first["run"]["runId"]
        assert again["replayed"] is True and again["idempotencyKey"] == first["idempotencyKey"]
        assert "no second run was started" in again["summary"] and "new idempotencyKey" in " ".join(again["nextSteps"])
        assert len(s.emulator.emulator.run_ids()) == 1

        other = await s.start("A different task entirely")
        assert other["run"]["runId"] != first["run"]["runId"] and other["replayed"] is False
        assert len(s.emulator.emulator.run_ids()) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_connection_dropped_after_the_run_was_created_yields_one_run(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        emu.inject_fault("drop_after_commit", count=1, method="POST", path=RUNS)
        started = await s.ok("start_run", repoId=repo, prompt="Upgrade the logging library")
        assert len(emu.run_ids()) == 1
        assert started["run"]["runId"] == emu.run_ids()[0]
        keys = {r.idempotency_key for r in emu.requests if r.method == "POST" and r.path == RUNS}
        assert keys == {started["idempotencyKey"]}, "every attempt must carry the same Idempotency-Key"


@pytest.mark.parametrize("mode", MODES)
async def test_a_start_that_timed_out_for_the_host_is_replayed_on_the_next_call(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, max_retries=0) as s:
        emu = s.emulator.emulator
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        emu.inject_fault("drop_after_commit", count=1, method="POST", path=RUNS)
        message = await s.error("start_run", repoId=repo, prompt="Write the migration")
        assert "will not start a second run" in message or "does not start a second run" in message
        retried = await s.ok("start_run", repoId=repo, prompt="Write the migration")
        assert retried["replayed"] is True
        assert len(emu.run_ids()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_dedupe_survives_a_server_restart(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(EmulatorConfig()) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            first = await s.start("Fix the flaky test")
        async with session(tmp_path, mode, emulator=emu) as s:
            again = await s.start("Fix the flaky test")
        assert again["run"]["runId"] == first["run"]["runId"] and again["replayed"] is True
        assert len(emu.emulator.run_ids()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_identical_starts_make_one_run(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        results: list[dict[str, object]] = []

        async def start() -> None:
            results.append(await s.ok("start_run", repoId=repo, prompt="Same task at once"))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(start)
        assert len({str(r["run"]["runId"]) for r in results}) == 1  # type: ignore[index]
        assert len(s.emulator.emulator.run_ids()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_window_zero_disables_dedupe(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, dedupe_window_seconds=0.0) as s:
        first = await s.start("Run it twice on purpose")
        second = await s.start("Run it twice on purpose")
        assert first["run"]["runId"] != second["run"]["runId"]
        assert len(s.emulator.emulator.run_ids()) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_an_explicit_key_wins_over_the_journal(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        first = await s.start("Same words, two runs wanted", idempotencyKey="user-chosen-1")
        second = await s.start("Same words, two runs wanted", idempotencyKey="user-chosen-2")
        assert first["idempotencyKey"] == "user-chosen-1" and second["idempotencyKey"] == "user-chosen-2"
        assert first["run"]["runId"] != second["run"]["runId"]
