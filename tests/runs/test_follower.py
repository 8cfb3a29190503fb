"""The follower hub against the emulator on loopback: sharing, stopping, the token budget, 429s, the stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from mogplex_mcp.api.client import API_PREFIX, MogplexClient, make_http_client
from mogplex_mcp.api.models import StartRunRequest
from mogplex_mcp.api.stream import stream_clients
from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, ManualClock, running_emulator
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.follower import FollowerHub, FollowSettings, RunFollower
from mogplex_mcp.server.state import follower_client_factory

pytestmark = pytest.mark.anyio

FAST = FollowSettings(poll_interval=0.05, max_poll_interval=0.2, linger_seconds=0.3)
WAIT_LIMIT = 15.0
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"


@dataclass
class Rig:
    """A hub on a real HTTP pool, pointed at an emulator."""

    hub: FollowerHub
    emu: EmulatorHandle
    api: MogplexClient

    async def start(self, scenario: str) -> str:
        request = StartRunRequest(repo_id=REPO_ID, prompt=f"Do the work [scenario:{scenario}]")
        return (await self.api.start_run(request)).run.run_id

    def requests(self, run_id: str, suffix: str = "") -> int:
        return self.emu.emulator.request_count(path_prefix=f"{API_PREFIX}/runs/{run_id}{suffix}")

    def stream_requests(self, run_id: str) -> int:
        return self.requests(run_id, "/events/stream")

    def upstream_event_ids(self, run_id: str) -> list[str]:
        emulator = self.emu.emulator
        run = emulator.store.get(run_id)
        assert run is not None
        return [event["id"] for event in run.events(emulator.clock())]


@asynccontextmanager
async def rig(
    config: EmulatorConfig,
    follow: FollowSettings = FAST,
    *,
    streams: bool = True,
    clock: ManualClock | None = None,
) -> AsyncIterator[Rig]:
    async with running_emulator(config, clock=clock) as emu:
        settings = Settings(token=emu.token, base_url=emu.base_url, state_dir=Path("/nonexistent"), read_timeout=5.0)
        async with make_http_client(settings) as http, anyio.create_task_group() as tg:
            hub = FollowerHub(
                tg,
                follower_client_factory(settings, lambda: http),
                follow,
                make_stream=stream_clients(lambda: http) if streams else None,
            )
            async with MogplexClient.from_settings(settings, http=http) as api:
                yield Rig(hub, emu, api)
            tg.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`, failing after WAIT_LIMIT seconds.

    Re-checked every 10 ms: the conditions watched here (the emulator's request log, a follower's
    loop ending) have no change event to wait on.
    """
    with anyio.fail_after(WAIT_LIMIT):
        while not condition():  # noqa: ASYNC110 - see the docstring
            await anyio.sleep(0.01)


async def follow_to_the_end(r: Rig, run_id: str) -> RunFollower:
    async with r.hub.watch(r.emu.token, run_id) as follower:
        await until(lambda: not follower.active and follower.ready.is_set())
    return follower


async def test_one_follower_serves_every_watcher_and_stops_at_the_terminal_status() -> None:
    async with rig(EmulatorConfig(speed=20.0)) as r:
        run_id = await r.start("success")
        async with AsyncExitStack() as stack:
            followers = [await stack.enter_async_context(r.hub.watch(r.emu.token, run_id)) for _ in range(5)]
            assert all(f is followers[0] for f in followers)
            assert followers[0].watchers == 5
            await until(lambda: followers[0].done)
        follower = followers[0]
        await until(lambda: not follower.active)
        assert follower.watchers == 0 and follower.run is not None and follower.run.status == "success"
        ids = [event.id for event in follower.events()]
        assert ids == r.upstream_event_ids(run_id), "every event once, oldest first"
        assert r.hub.active_count == 0


async def test_nobody_watching_stops_the_follower_and_its_requests() -> None:
    async with rig(EmulatorConfig(speed=20.0)) as r:
        quiet, busy = await r.start("endless"), await r.start("endless")
        async with r.hub.watch(r.emu.token, quiet) as abandoned:
            await until(lambda: abandoned.ready.is_set())
        await until(lambda: not abandoned.active)
        stopped_at = r.requests(quiet)
        async with r.hub.watch(r.emu.token, busy):
            await until(lambda: r.requests(busy) >= 6)
        assert r.requests(quiet) == stopped_at, "an abandoned follower kept asking upstream"


async def test_followers_of_one_token_share_its_request_budget() -> None:
    budget = FollowSettings(poll_interval=0.01, max_poll_interval=0.02, linger_seconds=5.0, requests_per_minute=6)
    async with rig(EmulatorConfig(speed=20.0), budget, streams=False) as r:
        runs = [await r.start("endless") for _ in range(3)]
        async with AsyncExitStack() as stack:
            for run_id in runs:
                await stack.enter_async_context(r.hub.watch(r.emu.token, run_id))
            pacer = r.hub.pacer(token_fingerprint(r.emu.token))
            await until(lambda: pacer.sent_in_window == 6)
            assert pacer.delay_needed() > 30, "a seventh request would go out inside the minute"
            # The read-only token has a budget of its own: by the time it is spent, ours has not grown.
            other = await r.start("endless")
            async with r.hub.watch(r.emu.read_only_token, other):
                await until(lambda: r.hub.pacer(token_fingerprint(r.emu.read_only_token)).sent_in_window == 6)
            assert sum(r.requests(run_id) for run_id in runs) == 6


async def test_a_429_pauses_the_follower_by_retry_after_instead_of_failing() -> None:
    async with rig(EmulatorConfig(speed=10.0), streams=False) as r:
        run_id = await r.start("success")
        r.emu.emulator.inject_fault(
            "rate_limited_429", count=2, path=f"{API_PREFIX}/runs/{run_id}/events", retry_after=1
        )
        pacer = r.hub.pacer(token_fingerprint(r.emu.token))
        async with r.hub.watch(r.emu.token, run_id) as follower:
            await until(lambda: pacer.delay_needed() > 0.5)
            assert follower.error is None and follower.fatal is None
            await until(lambda: follower.done)
        assert follower.run is not None and follower.run.status == "success"
        assert follower.fatal is None and follower.error is None
        assert _statuses(r, run_id).count(429) == 2


async def test_the_stream_reaches_every_event_of_a_500_event_run() -> None:
    async with rig(EmulatorConfig(flavor="observed", speed=20.0)) as r:
        run_id = await r.start("long")
        follower = await follow_to_the_end(r, run_id)
        assert follower.run is not None and follower.run.status == "success"
        assert [event.id for event in follower.events()] == r.upstream_event_ids(run_id)
        assert follower.event_count == 500 and not follower.window_exhausted
        assert r.stream_requests(run_id) >= 1


async def test_a_finished_run_past_200_events_is_backfilled_from_the_stream() -> None:
    async with rig(EmulatorConfig(flavor="observed", speed=1000.0)) as r:
        run_id = await r.start("long")
        await until(lambda: r.emu.emulator.store.get(run_id).is_terminal(r.emu.emulator.clock()))  # type: ignore[union-attr]
        follower = await follow_to_the_end(r, run_id)
        assert follower.event_count == 500 and not follower.window_exhausted
        assert r.stream_requests(run_id) == 1 and _statuses(r, run_id) == [200], "one poll, one replay"


async def test_without_the_stream_the_log_is_cut_at_200_and_says_so() -> None:
    async with rig(EmulatorConfig(flavor="documented", speed=20.0)) as r:
        first, second = await r.start("long"), await r.start("long")
        follower = await follow_to_the_end(r, first)
        assert follower.event_count == 200 and follower.window_exhausted
        assert r.hub.stream_unsupported(r.emu.base_url)
        assert not r.hub.can_stream(r.emu.base_url)
        await follow_to_the_end(r, second)
        assert r.stream_requests(first) == 1 and r.stream_requests(second) == 0, "the 404 was not remembered"


async def test_a_quiet_stream_reconnects_after_the_last_event_without_duplicates() -> None:
    clock = ManualClock()
    follow = FollowSettings(poll_interval=0.05, max_poll_interval=0.1, linger_seconds=5.0, stream_idle_seconds=0.3)
    async with rig(EmulatorConfig(flavor="observed"), follow, clock=clock) as r:
        run_id = await r.start("success")
        clock.advance(5.0)
        async with r.hub.watch(r.emu.token, run_id) as follower:
            await until(lambda: follower.event_count == len(r.upstream_event_ids(run_id)) > 0)
            assert follower.run is not None and follower.run.status == "streaming"
            await until(lambda: r.stream_requests(run_id) >= 3)
            clock.advance(60.0)
            await until(lambda: follower.done)
        ids = [event.id for event in follower.events()]
        assert ids == r.upstream_event_ids(run_id) and len(set(ids)) == len(ids)
        assert follower.run.status == "success"


async def test_a_429_on_the_stream_pauses_and_then_streams() -> None:
    async with rig(EmulatorConfig(flavor="observed", speed=5.0)) as r:
        run_id = await r.start("success")
        r.emu.emulator.inject_fault("rate_limited_429", path=f"{API_PREFIX}/runs/{run_id}/events/stream", retry_after=1)
        follower = await follow_to_the_end(r, run_id)
        assert follower.run is not None and follower.run.status == "success"
        assert follower.error is None and follower.fatal is None
        assert [event.id for event in follower.events()] == r.upstream_event_ids(run_id)
        assert _statuses(r, run_id, "/events/stream") == [429, 200]


async def test_an_unknown_run_ends_following_with_a_fatal_not_found() -> None:
    async with rig(EmulatorConfig(flavor="observed")) as r:
        follower = await follow_to_the_end(r, "00000000-0000-4000-8000-000000000000")
        assert follower.fatal is not None and "404" in str(follower.fatal)
        assert follower.done and not follower.active


def _statuses(r: Rig, run_id: str, suffix: str = "/events") -> list[Any]:
    path = f"{API_PREFIX}/runs/{run_id}{suffix}"
    return [record.status for record in r.emu.emulator.log.snapshot() if record.path == path]


async def test_finished_followers_are_a_cache_bounded_by_events_not_only_by_count() -> None:
    budget = FollowSettings(poll_interval=0.05, max_poll_interval=0.2, linger_seconds=0.3, max_idle_events=700)
    async with rig(EmulatorConfig(flavor="observed", speed=1000.0), budget) as r:
        first, second = await r.start("long"), await r.start("long")
        assert (await follow_to_the_end(r, first)).event_count == 500
        assert r.hub.get(r.emu.token, first) is not None, "one long run fits the budget"
        assert (await follow_to_the_end(r, second)).event_count == 500
        assert r.hub.get(r.emu.token, first) is None, "the least recently used run was dropped"
        assert r.hub.get(r.emu.token, second) is not None, "the newest stays cached"
