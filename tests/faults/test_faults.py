"""Upstream faults, injected by the emulator: each tool fails clearly inside its bound, and serving goes on.

tests/server/test_errors.py shows one tool per fault family; this suite takes each fault through every
tool (and every endpoint), counts the upstream requests a fault costs, and checks the server afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig
from tests.faults.support import RUNS_PATH, RecordingTransport, duplicate_runs, served, tool_bound
from tests.server.harness import Session, text_of

pytestmark = pytest.mark.anyio

API = "/api/v1/mogplex"
NO_LIMITS = EmulatorConfig(speed=50.0, rate_limit_per_minute=0, start_limits=(0, 0, 0))
# A run that never finishes by itself, so cancel_run and wait_for_run have something to act on.
ENDLESS = "Keep working on the parser [scenario:endless]"


async def call_bounded(s: Session, tool: str, **arguments: Any) -> tuple[bool, str]:
    """Call a tool under a hang guard of its own bound (+ slack); return (is_error, the text the model sees)."""
    with anyio.fail_after(tool_bound(s.settings) + 5.0):
        result = await s.call(tool, **arguments)
    return result.is_error, text_of(result)


def every_tool(run_id: str, repo_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("list_repos", {}),
        ("start_run", {"repoId": repo_id, "prompt": "Bump the lint config"}),
        ("get_run", {"runId": run_id}),
        ("list_run_events", {"runId": run_id}),
        ("wait_for_run", {"runId": run_id, "timeoutSeconds": 1}),
        ("cancel_run", {"runId": run_id}),
    ]


async def still_serving(s: Session) -> None:
    """After a fault is gone: reads work, and a new start makes exactly one new run."""
    s.emulator.emulator.clear_faults()
    before = len(s.emulator.emulator.run_ids())
    assert (await s.ok("list_repos"))["count"] >= 1
    started = await s.start(f"A fresh task after the fault #{before}")
    assert started["replayed"] is False
    assert len(s.emulator.emulator.run_ids()) == before + 1
    assert (await s.ok("get_run", runId=started["run"]["runId"]))["run"]["runId"] == started["run"]["runId"]


async def test_dropped_connection_after_a_committed_start_makes_one_run_under_one_key(tmp_path: Path) -> None:
    """Every client attempt dropped after the commit, then the host retries the tool: still one run, one key."""
    wire = RecordingTransport()
    async with served(tmp_path, config=NO_LIMITS, transport=wire, max_retries=2) as s:
        emu = s.emulator.emulator
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        emu.inject_fault("drop_after_commit", count=3, method="POST", path=RUNS_PATH)
        error_is, message = await call_bounded(s, "start_run", repoId=repo, prompt="Port the CLI to argparse")
        assert error_is and "Could not reach Mogplex" in message and "second run" in message
        assert len(emu.run_ids()) == 1, "the first attempt committed a run"

        retried = await s.ok("start_run", repoId=repo, prompt="Port the CLI to argparse")
        assert retried["replayed"] is True and retried["run"]["runId"] == emu.run_ids()[0]
        assert [s.idempotency_key for s in wire.starts] == [retried["idempotencyKey"]] * 4
        assert duplicate_runs(emu).clean
        await still_serving(s)


@pytest.mark.parametrize(
    ("tool", "method", "path"),
    [
        ("list_repos", "GET", f"{API}/repos"),
        ("start_run", "POST", RUNS_PATH),
        ("get_run", "GET", RUNS_PATH + "/"),
        ("list_run_events", "GET", RUNS_PATH + "/"),
        ("cancel_run", "POST", RUNS_PATH + "/"),
    ],
)
async def test_html_502s_from_a_proxy_are_retried_into_success(
    tmp_path: Path, tool: str, method: str, path: str
) -> None:
    wire = RecordingTransport()
    async with served(tmp_path, config=NO_LIMITS, transport=wire, max_retries=2) as s:
        emu = s.emulator.emulator
        run = await s.start(ENDLESS)
        repo, run_id = run["run"]["repoId"], run["run"]["runId"]
        arguments = dict(every_tool(run_id, repo))[tool]
        if tool == "start_run":
            path = RUNS_PATH  # exactly POST /runs, not the run's cancel endpoint below it
        emu.inject_fault("html_502", count=2, method=method, path=path)
        before = emu.request_count()
        error_is, message = await call_bounded(s, tool, **arguments)
        assert not error_is, message
        assert emu.request_count() - before == 3, "two 502s, then the answer"
        assert all(r.fault in (None, "html_502") for r in emu.requests)
        if tool == "start_run":
            assert len({s.idempotency_key for s in wire.starts[1:]}) == 1 and len(wire.starts) == 4
            assert len(emu.run_ids()) == 2
        assert duplicate_runs(emu).clean
        await still_serving(s)


@pytest.mark.parametrize("retry_after", [1, 30])
async def test_persistent_503_names_the_delay_inside_every_tools_bound(tmp_path: Path, retry_after: int) -> None:
    """Retry-After within the cap is slept through until the budget ends; beyond it, no retry at all."""
    async with served(tmp_path, config=NO_LIMITS, retry_budget_seconds=1.5, max_retries=2) as s:
        emu = s.emulator.emulator
        run = await s.start(ENDLESS)
        for tool, arguments in every_tool(run["run"]["runId"], run["run"]["repoId"]):
            if tool == "wait_for_run":
                continue  # a wait keeps waiting through upstream trouble; covered by the storm test below
            emu.inject_fault("unavailable_503", count=1000, retry_after=retry_after)
            before = emu.request_count()
            error_is, message = await call_bounded(s, tool, **arguments)
            sent = emu.request_count() - before
            emu.clear_faults()
            assert error_is, (tool, message)
            assert "503" in message and f"Retry after {retry_after} s" in message, (tool, message)
            if retry_after > s.settings.max_retry_after_seconds:
                assert sent == 1, (tool, sent)
            else:
                assert 2 <= sent <= 1 + s.settings.max_retries, (tool, sent)
        assert len(emu.run_ids()) == 1, "a 503 before the start must not create a run"
        await still_serving(s)


async def test_a_429_storm_costs_a_bounded_number_of_requests(tmp_path: Path) -> None:
    """Every request rate limited: each tool call sends at most 1 + max_retries; waits pause on Retry-After."""
    async with served(tmp_path, config=NO_LIMITS, retry_budget_seconds=1.5, max_retries=2) as s:
        emu = s.emulator.emulator
        run = await s.start(ENDLESS)
        # wait_for_run watches a run of its own: its follower's polls stay apart from the other tools' counts.
        watched = (await s.start(ENDLESS + " (watched)"))["run"]["runId"]
        tools = [t for t in every_tool(run["run"]["runId"], run["run"]["repoId"]) if t[0] != "wait_for_run"]

        def requests(about_watched: bool) -> int:
            return sum((watched in r.path) == about_watched for r in emu.requests)

        for retry_after in (1, 60):
            emu.inject_fault("rate_limited_429", count=10_000, retry_after=retry_after)
            for tool, arguments in tools:
                before = requests(about_watched=False)
                error_is, message = await call_bounded(s, tool, **arguments)
                sent = requests(about_watched=False) - before
                assert error_is and f"Retry after {retry_after} s" in message, (tool, message)
                assert sent <= 1 + s.settings.max_retries, (tool, sent)
                if retry_after > s.settings.max_retry_after_seconds:
                    assert sent == 1, (tool, sent)
            before = requests(about_watched=True)
            error_is, message = await call_bounded(s, "wait_for_run", runId=watched, timeoutSeconds=1.5)
            # The follower pauses for Retry-After after a 429: one poll per pause, never a loop.
            assert requests(about_watched=True) - before <= 2, message
            emu.clear_faults()
        assert len(emu.run_ids()) == 2
        await still_serving(s)


async def test_a_hung_upstream_never_holds_a_tool_past_its_bound(tmp_path: Path) -> None:
    """The upstream accepts and never answers: every tool returns (an error, or a still-running wait)."""
    async with served(tmp_path, config=NO_LIMITS, retry_budget_seconds=1.0, read_timeout=0.4, max_retries=1) as s:
        emu = s.emulator.emulator
        run = await s.start(ENDLESS)
        emu.inject_fault("hang", count=10_000)
        for tool, arguments in every_tool(run["run"]["runId"], run["run"]["repoId"]):
            error_is, message = await call_bounded(s, tool, **arguments)
            if tool == "wait_for_run":
                assert error_is or "Still going" in message, message
                continue
            assert error_is, (tool, message)
            assert "did not answer in time" in message or "Could not reach" in message, (tool, message)
        emu.clear_faults()
        # The hung start never reached the service: retrying it starts the run once.
        again = await s.ok("start_run", repoId=run["run"]["repoId"], prompt="Bump the lint config")
        assert again["replayed"] is False
        assert len(emu.run_ids()) == 2 and duplicate_runs(emu).clean
        await still_serving(s)


async def test_a_slow_commit_behind_a_client_timeout_is_replayed_not_repeated(tmp_path: Path) -> None:
    """The answer arrives after the client gave up, yet the run was made: the retry must replay it."""
    wire = RecordingTransport()
    async with served(
        tmp_path, config=NO_LIMITS, transport=wire, retry_budget_seconds=4.0, read_timeout=0.3, max_retries=2
    ) as s:
        emu = s.emulator.emulator
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        emu.inject_fault("delay", count=2, method="POST", path=RUNS_PATH, delay=0.6)
        result = await s.call("start_run", repoId=repo, prompt="Split the settings module")
        if result.is_error:  # every attempt timed out: the host calls again
            result = await s.call("start_run", repoId=repo, prompt="Split the settings module")
        assert not result.is_error, text_of(result)
        # Let the delayed attempts the client gave up on land before counting runs. The emulator offers no
        # event for "answered", so poll its log, bounded.
        with anyio.fail_after(10):
            while any(r.status is None for r in emu.requests if r.method == "POST" and r.path == RUNS_PATH):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert emu.request_count("POST", RUNS_PATH) >= 2, "the delay did not outlast the client's timeout"
        assert len(emu.run_ids()) == 1 and duplicate_runs(emu).clean
        assert len({start.idempotency_key for start in wire.starts}) == 1
        await still_serving(s)


async def test_dropped_cancel_is_retried_and_stays_idempotent(tmp_path: Path) -> None:
    async with served(tmp_path, config=NO_LIMITS, max_retries=2) as s:
        emu = s.emulator.emulator
        run_id = (await s.start(ENDLESS))["run"]["runId"]
        emu.inject_fault("drop_after_commit", count=1, method="POST", path=f"{RUNS_PATH}/{run_id}/cancel")
        cancelled = await s.ok("cancel_run", runId=run_id)
        assert cancelled["run"]["runId"] == run_id
        assert emu.request_count("POST", f"{RUNS_PATH}/{run_id}/cancel") == 2
        await still_serving(s)
