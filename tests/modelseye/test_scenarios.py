"""Every emulator scenario, driven the way a model drives it, in both protocol eras.

Each flow reads everything a model would — start_run, cancel_run, chained wait_for_run calls that pass the
cursor on, list_run_events, get_run, a repeated start_run, a cancel of the finished run and the three
resources — and every answer's summary, nextSteps, pullRequestUrl/codeChanged and status is held against
what the emulator knows happened (`Truth`), or must say "unknown" where the server could not see the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from tests.modelseye.support import Reader
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

FLOW_LIMIT = 60.0


@dataclass(frozen=True)
class Case:
    scenario: str
    flavor: str = "documented"
    speed: float = 50.0
    cancel: bool = False
    create_branch: bool = True

    @property
    def sees_everything(self) -> bool:
        return not (self.scenario == "long" and self.flavor == "documented")


CASES = [
    Case("success", create_branch=False),
    Case("no_changes"),
    Case("failure"),
    Case("slow_start"),
    Case("long"),
    Case("long", flavor="observed"),
    Case("endless", cancel=True),
    Case("endless", flavor="observed", cancel=True),
    Case("cancel_race", speed=5.0, cancel=True),
    Case("cancel_conflict", cancel=True),
    Case("queue_failure"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.scenario}-{c.flavor}")
async def test_every_answer_agrees_with_what_really_happened(tmp_path: Path, mode: Mode, case: Case) -> None:
    config = EmulatorConfig(flavor=case.flavor, speed=case.speed, long_run_events=300)  # type: ignore[arg-type]
    async with running_emulator(config) as emu, session(tmp_path, mode, emulator=emu) as s:
        repo_id = (await s.ok("list_repos"))["repos"][0]["id"]
        arguments: dict[str, Any] = {
            "repoId": repo_id,
            "prompt": f"Make the change [scenario:{case.scenario}]",
            "rootDirectory": "apps/web",
        }
        if case.create_branch:
            arguments["createBranch"] = True
        started = await s.ok("start_run", **arguments)
        reader = Reader(s, started["run"]["runId"], case.sees_everything)
        with anyio.fail_after(FLOW_LIMIT):
            await check_start(reader, started, case)
            if case.cancel:
                await cancel_while_running(reader, case)
            seen = await follow_to_the_end(reader)
            truth = reader.truth()
            visible = truth.event_ids if case.sees_everything else truth.event_ids[:200]
            # Every event once, in order; a compact view (a tool's start and finish, streamed words) stands for
            # several events under its last one's id, so only events coalesced that way may go unnamed.
            assert len(seen) == len(set(seen)) and seen[-1] == visible[-1], "chained waits must reach the end once"
            assert seen == [i for i in visible if i in set(seen)], "chained waits and pages keep the events' order"
            unnamed = [i for i in visible if i not in set(seen)]
            assert set(unnamed) <= truth.coalesced_ids, "chained waits and pages must show every event once"
            await reader.tool("get_run", runId=reader.run_id)
            await reader.tool("list_run_events", runId=reader.run_id, limit=200)
            await check_repeated_start(reader, arguments, started)
            finished = await reader.tool("cancel_run", runId=reader.run_id)
            assert finished["outcome"] == "already_terminal" and "nothing was cancelled" in finished["summary"]
            await reader.resources()
        # A restarted server has followed nothing: get_run, the resources and a repeated start look it up.
        async with session(tmp_path, mode, emulator=emu) as restarted:
            cold = Reader(restarted, reader.run_id, case.sees_everything)
            with anyio.fail_after(FLOW_LIMIT):
                # get_run and the resources first: the rootDirectory the start sent comes from the journal.
                await cold.tool("get_run", runId=cold.run_id)
                await cold.resources()
                await check_repeated_start(cold, arguments, started)


async def check_start(reader: Reader, started: dict[str, Any], case: Case) -> None:
    from tests.modelseye.support import check_run_answer

    check_run_answer("start_run", "start_run", started, reader.truth(), reader.sees_everything)
    assert started["replayed"] is (case.scenario == "queue_failure")
    if case.scenario == "queue_failure":  # the upstream took the start, then answered 500: our retry got it back
        assert started["recovered"] is True and "the first attempt got HTTP 500" in started["summary"]
        assert "repeated an earlier" not in " ".join(started["nextSteps"])
        assert "failed: Failed to queue run" in started["summary"]
    else:
        assert started["recovered"] is False and started["summary"].startswith("Started run")
    straight = "straight onto the base branch" in started["summary"]
    assert straight is (not case.create_branch and not started["run"]["terminal"])
    if straight:
        assert any("createBranch: true" in step for step in started["nextSteps"])


async def cancel_while_running(reader: Reader, case: Case) -> None:
    if case.scenario == "cancel_conflict":
        refused = await reader.session.error("cancel_run", runId=reader.run_id)
        assert refused.startswith("cancel_run: ") and "409" in refused and "get_run" in refused
        return
    cancelled = await reader.tool("cancel_run", runId=reader.run_id)
    assert cancelled["outcome"] == "cancellation_requested"
    if not cancelled["run"]["terminal"]:
        assert "wait_for_run" in cancelled["nextSteps"][0]


async def follow_to_the_end(reader: Reader) -> list[str]:
    """Chain waits the way their nextSteps say (afterEventId = nextCursor), then page on with list_run_events."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        waited = await reader.tool("wait_for_run", runId=reader.run_id, timeoutSeconds=5, **_after(cursor))
        seen += [event["id"] for event in waited["newEvents"]]
        cursor = waited["nextCursor"]
        if waited["finished"]:
            break
        if cursor is not None:
            assert f"afterEventId {cursor}" in waited["nextSteps"][0], "the next wait must pass the cursor on"
    if waited["newEventCount"] > len(waited["newEvents"]):
        assert any(f"afterEventId {cursor}" in step for step in waited["nextSteps"]), waited["nextSteps"]
    while True:
        page = await reader.tool("list_run_events", runId=reader.run_id, limit=200, **_after(cursor))
        seen += [event["id"] for event in page["events"]]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            return seen


def _after(cursor: str | None) -> dict[str, str]:
    return {"afterEventId": cursor} if cursor else {}


async def check_repeated_start(reader: Reader, arguments: dict[str, Any], started: dict[str, Any]) -> None:
    """The caller's own repeat is a replay of the same run, with its real outcome — never a recovery."""
    again_arguments = {**arguments, "idempotencyKey": started["idempotencyKey"]}
    if reader.truth().status == "failed":  # the journal forgets failed starts: repeat by the key, as a caller would
        arguments = again_arguments
    again = await reader.tool("start_run", **arguments)
    assert again["run"]["runId"] == reader.run_id and again["replayed"] is True and again["recovered"] is False
    assert again["summary"].startswith("Replayed an identical earlier start")


async def test_the_emulator_truth_is_what_the_checks_compare_against(tmp_path: Path) -> None:
    """The checks can fail: a run that opened a pull request, told as "no pull request", is caught."""
    from tests.modelseye.support import Truth, check_sentence

    async with running_emulator(EmulatorConfig(speed=50.0)) as emu, session(tmp_path, "auto", emulator=emu) as s:
        run_id = (await s.start("Make the change [scenario:success]"))["run"]["runId"]
        await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        truth = Truth.of(emu, run_id)
        assert truth.pull_request_url and truth.status == "success"
        with pytest.raises(AssertionError):
            check_sentence("false claim", "Run succeeded (no pull request reported).", truth, True, terminal=True)


@pytest.mark.parametrize("mode", MODES)
async def test_an_outcome_that_cannot_be_looked_up_is_unknown_never_no_pull_request(tmp_path: Path, mode: Mode) -> None:
    """The run is reported either way; when its events cannot be read, its delivery is unknown."""
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            started = await s.start("Make the change [scenario:success]")
            run_id = started["run"]["runId"]
            await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        async with session(tmp_path, mode, emulator=emu) as restarted:  # nothing followed, nothing cached
            emu.emulator.inject_fault("internal_500", count=100, path=f"/api/v1/mogplex/runs/{run_id}/events")
            again = await restarted.start("Make the change [scenario:success]")
            emu.emulator.clear_faults()
    assert again["replayed"] is True and again["run"]["status"] == "success"
    assert again["run"]["delivered"] == "unknown" and again["run"]["pullRequestUrl"] is None
    assert "unknown" in again["summary"] and "no pull request" not in again["summary"].lower()
