"""Answers a lead agent trusts (issue 21): a run's one outcome reaches the runs list from every path that saw
it, and a status filter never files a run under a status it may no longer have.

The emulator runs on a ManualClock, so "finished upstream seconds ago, unseen by this server" is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp_types import TextResourceContents

from mogplex_mcp.emulator import EmulatorConfig, ManualClock, running_emulator
from mogplex_mcp.runs.journal import token_fingerprint
from tests.server.harness import MODES, Mode, Session, session

pytestmark = pytest.mark.anyio

LATER = 600.0  # simulated seconds: every finite scenario is over by then


def _row(listed: dict[str, Any], run_id: str) -> dict[str, Any]:
    rows = {run["runId"]: run for run in [*listed["runs"], *listed.get("unconfirmed", [])]}
    assert run_id in rows, f"{run_id} not listed: {listed['summary']}"
    return rows[run_id]


def _assert_pull_request_row(row: dict[str, Any], where: str) -> None:
    assert row["status"] == "success", where
    assert row["delivered"] == "pull_request", f"{where}: delivered {row['delivered']!r}"
    assert row["pullRequestUrl"] and "/pull/" in row["pullRequestUrl"], f"{where}: the pull request was lost"
    assert row["codeChanged"] is True, where
    assert row["changedFilesTotal"] == 2, f"{where}: changedFilesTotal {row['changedFilesTotal']!r}"


async def _read_run_resource(s: Session, run_id: str) -> dict[str, Any]:
    contents = (await s.client.read_resource(f"mogplex://runs/{run_id}")).contents[0]
    assert isinstance(contents, TextResourceContents)
    document: dict[str, Any] = json.loads(contents.text)
    return document


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["get_run", "resource", "cancel_run"])
async def test_a_pull_request_seen_by_any_path_is_in_the_runs_list_and_survives_a_restart(
    tmp_path: Path, mode: Mode, path: str
) -> None:
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            run_id = (await s.start("Ship it [scenario:success]", createBranch=True))["run"]["runId"]
            clock.advance(LATER)  # finished upstream; this server followed nothing
            if path == "get_run":
                seen = (await s.ok("get_run", runId=run_id))["run"]
            elif path == "resource":
                seen = (await _read_run_resource(s, run_id))["run"]
            else:
                seen = (await s.ok("cancel_run", runId=run_id))["run"]
            assert seen["pullRequestUrl"] and seen["delivered"] == "pull_request"
            row = _row(await s.ok("list_runs"), run_id)
            _assert_pull_request_row(row, f"list_runs after {path}")
            assert row["pullRequestUrl"] == seen["pullRequestUrl"]
        async with session(tmp_path, mode, emulator=emu) as restarted:
            before = emu.emulator.request_count()
            row = _row(await restarted.ok("list_runs"), run_id)
            _assert_pull_request_row(row, f"list_runs after {path} and a restart")
            assert row["statusSource"] == "final" and emu.emulator.request_count() == before


async def test_a_finished_run_whose_outcome_nobody_recorded_is_unknown_not_no_pull_request(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu:
        async with session(tmp_path, "auto", emulator=emu) as s:
            run_id = (await s.start("Ship it [scenario:success]", createBranch=True))["run"]["runId"]
            # The journal learns the final status alone (as an older version of this server wrote it).
            s.state.journal.remember_run(token_fingerprint(emu.token), run_id, status="success")
            row = _row(await s.ok("list_runs"), run_id)
    assert row["statusSource"] == "final" and row["pullRequestUrl"] is None
    assert row["delivered"] == "unknown", "a null pull request link must not read as 'no pull request'"


@pytest.mark.parametrize("mode", MODES)
async def test_a_status_filter_never_lists_a_run_that_no_longer_matches(tmp_path: Path, mode: Mode) -> None:
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            done = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
            endless = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
            clock.advance(LATER)  # `done` finished upstream seconds ago; the journal still says pending
            active = await s.ok("list_runs", status="active")
            assert [run["runId"] for run in active["runs"]] == [endless], active["summary"]
            assert active["runs"][0]["statusSource"] == "refreshed"
            assert "no longer" in active["summary"]
            finished = await s.ok("list_runs", status="finished")
            assert [run["runId"] for run in finished["runs"]] == [done]
            assert finished["runs"][0]["delivered"] == "pull_request"


async def test_a_filtered_row_that_cannot_be_refreshed_is_unconfirmed_with_its_age(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu:
        async with session(tmp_path, "auto", emulator=emu, list_refresh_max=0) as s:
            done = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
            endless = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
            clock.advance(LATER)
            before = emu.emulator.request_count()
            active = await s.ok("list_runs", status="active")
            assert emu.emulator.request_count() == before, "no budget: nothing is read upstream"
    assert active["runs"] == [] and active["count"] == 0, "unconfirmed rows are not filed under 'active'"
    assert {run["runId"] for run in active["unconfirmed"]} == {done, endless}
    assert all(
        run["statusSource"] == "remembered" and run["statusAgeSeconds"] is not None for run in active["unconfirmed"]
    )
    assert "could not be checked" in active["summary"] and "unconfirmed" in active["summary"]
    assert "No active runs" not in active["summary"]
