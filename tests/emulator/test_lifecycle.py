"""Run lifecycle on a manual clock: scenarios, events as their time comes, cancellation, determinism."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mogplex_mcp.emulator import LEAKED_TOKEN, EmulatorConfig, ManualClock
from mogplex_mcp.emulator.config import Flavor
from tests.emulator.support import API, error_of, served

pytestmark = pytest.mark.anyio
NO_LIMITS = EmulatorConfig(rate_limit_per_minute=0, start_limits=(0, 0, 0))


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(rate_limit_per_minute=0, start_limits=(0, 0, 0), **overrides)


def delivery(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = [event for event in events if event["type"] == "log" and event["payload"].get("stage") == "git_delivery"]
    assert len(found) == 1, "exactly one git_delivery log"
    return dict(found[0]["payload"])


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_success_goes_pending_streaming_success_and_ends_with_a_pr(flavor: Flavor) -> None:
    clock = ManualClock()
    statuses, counts = [], []
    with anyio.fail_after(10):
        async with served(config(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id()
            for _ in range(8):
                statuses.append((await api.run(run_id))["status"])
                counts.append(len(await api.events(run_id)))
                clock.advance(2.5)
            events = await api.events(run_id)
            run = await api.run(run_id)
    assert statuses[0] == "pending" and "streaming" in statuses and statuses[-1] == "success"
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == len(events)
    pr = delivery(events)
    assert pr["changed"] is True and pr["pull_request_url"].startswith("https://github.com/acme/api/pull/")
    assert events[-1]["type"] == "finished" and events[-1]["payload"]["exit_code"] == 0
    assert len({event["id"] for event in events}) == len(events)
    assert [event["createdAt"] for event in events] == sorted(event["createdAt"] for event in events)
    assert run["error"] is None and run["updatedAt"] >= run["createdAt"]


async def test_events_are_revealed_oldest_first_and_never_change() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(5)
            early = await api.events(run_id)
            clock.advance(60)
            late = await api.events(run_id)
    assert early and late[: len(early)] == early and len(late) > len(early)


async def test_no_changes_succeeds_without_a_pull_request() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id("[scenario:no_changes] tidy up")
            clock.advance(60)
            run, events = await api.run(run_id), await api.events(run_id)
    assert run["status"] == "success"
    assert delivery(events) == {"stage": "git_delivery", "changed": False, "pull_request_url": None, "branch": None}


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_failure_ends_failed_with_an_exit_code(flavor: Flavor) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id("[scenario:failure] break things")
            clock.advance(60)
            run, events = await api.run(run_id), await api.events(run_id)
    assert run["status"] == "failed" and "exit" in run["error"]
    assert events[-1]["type"] == "failed"
    assert events[-1]["payload"] == {"exit_code": 1, "failure_code": "agent_exit_nonzero"}


async def test_slow_start_stays_pending_for_half_a_minute() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id("[scenario:slow_start] x")
            clock.advance(25)
            waiting = await api.run(run_id)
            clock.advance(30)
            done = await api.run(run_id)
    assert waiting["status"] == "pending" and waiting["sandboxId"] is None
    assert done["status"] == "success"


async def test_default_scenario_applies_to_prompts_without_a_marker() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(default_scenario="failure"), clock=clock) as api:
            run_id = await api.start_id("no marker here")
            clock.advance(60)
            run = await api.run(run_id)
    assert run["status"] == "failed"


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_long_run_has_more_events_than_one_page_can_show(flavor: Flavor) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(long_run_events=500, flavor=flavor), clock=clock) as api:
            run_id = await api.start_id("[scenario:long] big job")
            clock.advance(3600)
            default_page = await api.events(run_id)
            biggest = await api.events(run_id, limit=200)
            emulator_total = len(api.handle.emulator.store.get(run_id).events(clock()))  # type: ignore[union-attr]
            run = await api.run(run_id)
    assert emulator_total == 500 and run["status"] == "success"
    assert [event["createdAt"] for event in biggest] == sorted(event["createdAt"] for event in biggest)
    assert len(default_page) == 100 and len(biggest) == 200 and biggest[:100] == default_page


@pytest.mark.parametrize(
    ("flavor", "raw", "expected"), [("observed", "0", 1), ("observed", "900", 200), ("observed", "abc", 100)]
)
async def test_observed_clamps_limit(flavor: Flavor, raw: str, expected: int) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id("[scenario:long] x")
            clock.advance(3600)
            response = await api.client.get(f"{API}/runs/{run_id}/events", params={"limit": raw})
    assert len(response.json()["data"]["events"]) == expected


@pytest.mark.parametrize("raw", ["0", "201", "abc"])
async def test_documented_rejects_an_out_of_range_limit(raw: str) -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            run_id = await api.start_id()
            response = await api.client.get(f"{API}/runs/{run_id}/events", params={"limit": raw})
    assert error_of(response) == (400, "BAD_REQUEST")


async def test_endless_run_keeps_streaming_within_the_events_cap_until_cancelled() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(max_events_per_run=50), clock=clock) as api:
            run_id = await api.start_id("[scenario:endless] x")
            clock.advance(86_400)
            still = await api.run(run_id)
            kept = len(api.handle.emulator.store.get(run_id).events(clock()))  # type: ignore[union-attr]
            cancel = (await api.cancel(run_id)).json()["data"]
            clock.advance(2)
            final, events = await api.run(run_id), await api.events(run_id, limit=200)
    assert still["status"] == "streaming" and kept <= 50
    assert cancel["status"] == "cancellation_requested" and final["status"] == "cancelled"
    assert [event["type"] for event in events[-2:]] == ["cancel_requested", "cancelled"]


async def test_documented_cancel_settles_a_moment_later_and_is_idempotent() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(5)
            first = (await api.cancel(run_id)).json()["data"]
            again = (await api.cancel(run_id)).json()["data"]
            clock.advance(1)
            settled = (await api.cancel(run_id)).json()["data"]
            clock.advance(60)
            events = await api.events(run_id)
    assert (first["status"], first["run"]["status"]) == ("cancellation_requested", "streaming")
    assert again["status"] == "cancellation_requested"
    assert (settled["status"], settled["run"]["status"]) == ("already_terminal", "cancelled")
    assert [event["type"] for event in events].count("cancel_requested") == 1
    assert not any(event["payload"].get("stage") == "git_delivery" for event in events)


async def test_cancel_of_a_finished_run_changes_nothing() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor="observed"), clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(60)
            before = await api.events(run_id)
            answer = (await api.cancel(run_id)).json()["data"]
            after = await api.events(run_id)
    assert answer["alreadyTerminal"] is True and answer["status"] == "success" and before == after


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_cancel_while_pending_in_the_race_ends_failed(flavor: Flavor) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id("[scenario:cancel_race] x")
            clock.advance(3)
            await api.cancel(run_id)
            clock.advance(5)
            run, events = await api.run(run_id), await api.events(run_id)
    assert run["status"] == "failed" and run["error"] == "ai_call is not pending"
    assert [event["type"] for event in events][-2:] == ["cancel_requested", "failed"]


async def test_cancel_while_pending_otherwise_cancels() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor="observed"), clock=clock) as api:
            run_id = await api.start_id()
            answer = (await api.cancel(run_id)).json()["data"]
    assert (answer["status"], answer["alreadyTerminal"]) == ("cancelled", False)
    assert answer["run"]["sandboxId"] is None


async def test_cancel_conflict_is_409_and_the_run_goes_on() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id("[scenario:cancel_conflict] x")
            clock.advance(5)
            refused = await api.cancel(run_id)
            clock.advance(60)
            run = await api.run(run_id)
    assert error_of(refused) == (409, "CONFLICT") and run["status"] == "success"


async def test_same_seed_same_ids_and_events_other_seed_other_ids() -> None:
    async def one_run(seed: int) -> tuple[str, list[tuple[str, str, Any]]]:
        clock = ManualClock()
        async with served(config(seed=seed), clock=clock) as api:
            run_id = await api.start_id("Refactor auth", createBranch=True)
            clock.advance(60)
            events = await api.events(run_id)
        return run_id, [(event["id"], event["type"], event["payload"]) for event in events]

    with anyio.fail_after(20):
        first, second, other = await one_run(7), await one_run(7), await one_run(8)
    assert first == second
    assert other[0] != first[0] and other[1][0][0] != first[1][0][0]


async def test_events_are_sanitized_like_upstream_with_its_blind_spot() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(config(flavor="observed"), clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(60)
            events = await api.events(run_id)
    leaky = next(event for event in events if event["message"] and LEAKED_TOKEN in event["message"])
    assert leaky["payload"]["env"] == "[redacted]" and leaky["payload"]["api_key"] == "[redacted]"
    assert "Bearer" not in leaky["payload"]["output"]
    tests_run = next(event for event in events if event["toolName"] == "run_command" and "output" in event["payload"])
    assert tests_run["payload"]["output"].endswith("[truncated]") and len(tests_run["payload"]["files"]) == 25
    assert tests_run["payload"]["summary"]["suites"]["auth"] == "[truncated]"


async def test_runs_are_capped_oldest_first() -> None:
    with anyio.fail_after(10):
        async with served(config(max_runs=3)) as api:
            ids = [await api.start_id(f"job {index}") for index in range(5)]
            kept = api.handle.emulator.run_ids()
            gone = await api.client.get(f"{API}/runs/{ids[0]}")
    assert kept == ids[2:] and error_of(gone) == (404, "NOT_FOUND")


async def test_a_say_marker_makes_the_agent_log_that_text_verbatim_once_streaming() -> None:
    clock = ManualClock()
    hostile = '<img src=x onerror="alert(1)">'
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id(f"Fix it [scenario:success] [say:{hostile}]", createBranch=True)
            assert await api.events(run_id) == []
            clock.advance(60)
            events = await api.events(run_id)
            run = await api.run(run_id)
    said = [event for event in events if event["message"] == hostile]
    assert len(said) == 1 and said[0]["type"] == "log"
    assert run["status"] == "success"
    assert "img" not in run["branch"]["working"] and "onerror" not in run["branch"]["working"]  # markers stay out
