"""wait_for_runs through real clients: any/all/timeout, progress across the set, bad input, shared followers."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.runs.follower import FollowSettings
from tests.server.harness import MODES, Mode, Session, session
from tests.server.resources.test_run_resources import until

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/mogplex/runs/"
UNPACED = FollowSettings(poll_interval=0.05, max_poll_interval=0.05, linger_seconds=0.5, requests_per_minute=6000)


async def _runs(s: Session, *scenarios: str) -> list[str]:
    return [(await s.start(f"Task {n} [scenario:{name}]"))["run"]["runId"] for n, name in enumerate(scenarios)]


@pytest.mark.parametrize("mode", MODES)
async def test_any_returns_when_the_first_run_finishes(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        endless, quick = await _runs(s, "endless", "success")
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        result = await s.client.call_tool(
            "wait_for_runs", {"runIds": [endless, quick], "timeoutSeconds": 30}, progress_callback=on_progress
        )
        waited = result.structured_content
        assert not result.is_error and waited is not None
        assert waited["done"] is True and waited["mode"] == "any"
        assert waited["finished"] == [quick] and waited["stillRunning"] == [endless]
        by_id = {run["runId"]: run for run in waited["runs"]}
        assert by_id[quick]["pullRequestUrl"].startswith("https://") and by_id[quick]["changedFiles"]
        assert by_id[quick]["newEventCount"] > 0 and by_id[quick]["cursor"]
        assert by_id[endless]["terminal"] is False
        assert "wait_for_runs again" in " ".join(waited["nextSteps"]) and endless in " ".join(waited["nextSteps"])
        assert any(m.startswith(quick[:8]) and "status: success" in m for m in messages)
        assert any(m.startswith(endless[:8]) for m in messages), "progress covers every run of the set"

        page = await s.ok("list_run_events", runId=quick, afterEventId=by_id[quick]["cursor"])
        assert page["events"] == [], "the cursor is the last event known"


@pytest.mark.parametrize("mode", MODES)
async def test_all_waits_for_every_run_and_timeout_reports_what_is_left(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        first, second = await _runs(s, "success", "failure")
        both = await s.ok("wait_for_runs", runIds=[first, second], mode="all", timeoutSeconds=30)
        assert both["done"] is True and sorted(both["finished"]) == sorted([first, second])
        assert {run["status"] for run in both["runs"]} == {"success", "failed"} and both["stillRunning"] == []

        (endless,) = await _runs(s, "endless")
        timed_out = await s.ok("wait_for_runs", runIds=[endless, first], mode="all", timeoutSeconds=1)
        assert timed_out["done"] is False and timed_out["stillRunning"] == [endless]
        assert timed_out["finished"] == [first] and timed_out["summary"].startswith("Timeout")


@pytest.mark.parametrize("mode", MODES)
async def test_bad_run_ids_are_refused_before_anything_is_sent(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        (run_id,) = await _runs(s, "success")
        before = s.emulator.emulator.request_count()
        repeated = await s.error("wait_for_runs", runIds=[run_id, run_id.upper()])
        assert "more than once" in repeated
        assert "UUID" in await s.error("wait_for_runs", runIds=[run_id, "../repos"])
        assert "runIds" in await s.error("wait_for_runs", runIds=[])
        too_many = [f"00000000-0000-4000-8000-{n:012d}" for n in range(21)]
        assert "runIds" in await s.error("wait_for_runs", runIds=too_many)
        assert s.emulator.emulator.request_count() == before


async def test_an_unknown_run_is_reported_not_fatal_for_the_others(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy") as s:
        (run_id,) = await _runs(s, "success")
        missing = "00000000-0000-4000-8000-000000000001"
        waited = await s.ok("wait_for_runs", runIds=[missing, run_id], mode="all", timeoutSeconds=30)
        assert waited["unreadable"] == [missing] and waited["finished"] == [run_id]
        assert (
            "no run with this runId exists"
            in {run["runId"]: run for run in waited["runs"]}[missing]["unreadableReason"]
        )


async def _upstream_reads_while_waiting(tmp_path: Path, waiters: int, seconds: float) -> tuple[float, int]:
    """(event reads per second at the emulator, followers alive) while `waiters` calls wait on the same 3 runs.

    A rate, not a count: the window (from every waiter holding every run until all have returned) differs a
    little between the two cases on a loaded machine.
    """
    async with (
        running_emulator(EmulatorConfig(speed=50.0)) as emu,
        session(tmp_path / str(waiters), "legacy", emulator=emu, follow=UNPACED) as s,
    ):
        run_ids = await _runs(s, "endless", "endless", "endless")
        wait = functools.partial(s.ok, "wait_for_runs", runIds=run_ids, mode="all", timeoutSeconds=seconds)
        async with anyio.create_task_group() as tg:
            for _ in range(waiters):
                tg.start_soon(wait)
            await until(lambda: all(_watchers(s, run_id) == waiters for run_id in run_ids))  # then count
            followers = s.state.hub.follower_count
            before, started = emu.emulator.request_count("GET", EVENTS), time.monotonic()
        reads = emu.emulator.request_count("GET", EVENTS) - before
        return reads / (time.monotonic() - started), followers


def _watchers(s: Session, run_id: str) -> int:
    follower = s.state.hub.get(s.emulator.token, run_id)
    return follower.watchers if follower is not None else 0


async def test_many_waiters_on_the_same_runs_cost_the_upstream_what_one_does(tmp_path: Path) -> None:
    one, one_followers = await _upstream_reads_while_waiting(tmp_path, 1, 2.0)
    many, many_followers = await _upstream_reads_while_waiting(tmp_path, 8, 2.0)
    assert one_followers == many_followers == 3, "one follower per run, however many wait on it"
    assert one > 0
    assert many <= one * 2, f"8 waiters cost {many:.1f} reads/s, 1 waiter {one:.1f}"
