"""Live run resources: updates by `resources/subscribe` (handshake era) and `subscriptions/listen` (modern
era) until the terminal status, unsubscribing, released watches, shared followers, and 429 bursts.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp.shared.subscriptions import ResourceUpdated

from mogplex_mcp.api.client import API_PREFIX
from mogplex_mcp.emulator import EmulatorConfig, ManualClock
from mogplex_mcp.runs.fingerprints import token_fingerprint
from tests.server.harness import MODES, Mode
from tests.server.resources.test_run_resources import WAIT_LIMIT, emulator, live, until

pytestmark = pytest.mark.anyio


async def test_a_subscriber_is_updated_until_the_terminal_status_then_the_follow_stops(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, live(tmp_path, "legacy", emu) as s:
        run_id = await s.start("success")
        uri = f"mogplex://runs/{run_id}/log"
        await s.subscribe(uri)
        seen: list[str] = []
        while not seen or seen[-1] != "success":
            count = len(s.inbox.updated)
            await s.inbox.wait(lambda: len(s.inbox.updated) > count)  # noqa: B023 - waited on at once
            assert set(s.inbox.updated) == {uri}
            seen.append(await s.status(run_id))
        assert "streaming" in seen, "no update while the run was going"
        follower = s.follower(run_id)
        await until(lambda: not follower.active)
        assert follower.watchers == 1, "the subscription holds its watch until unsubscribed"
        await s.unsubscribe(uri)
        assert follower.watchers == 0


async def test_a_listener_is_updated_until_the_terminal_status_then_the_follow_stops(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, live(tmp_path, "auto", emu) as s:
        run_id = await s.start("success")
        uri = f"mogplex://runs/{run_id}"
        seen: list[str] = []
        async with s.client.listen(resource_subscriptions=[uri]) as updates:
            with anyio.fail_after(WAIT_LIMIT):
                async for event in updates:
                    assert event == ResourceUpdated(uri=uri)
                    seen.append(await s.status(run_id))
                    if seen[-1] == "success":
                        break
            follower = s.follower(run_id)
            await until(lambda: not follower.active)
        assert "streaming" in seen
        await until(lambda: follower.watchers == 0)


async def test_unsubscribing_stops_that_resources_updates(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, live(tmp_path, "legacy", emu) as s:
        run_id = await s.start("endless")
        events, log = f"mogplex://runs/{run_id}/events", f"mogplex://runs/{run_id}/log"
        await s.subscribe(events)
        await s.subscribe(log)
        await s.inbox.wait(lambda: s.inbox.updated.count(events) >= 2)
        await s.unsubscribe(events)
        settled = s.inbox.updated.count(log) + 2  # a flush already under way may still carry `events`
        await s.inbox.wait(lambda: s.inbox.updated.count(log) >= settled)
        after = s.inbox.updated.count(events)
        await s.inbox.wait(lambda: s.inbox.updated.count(log) >= settled + 3)
        assert s.inbox.updated.count(events) == after, "updates kept coming after unsubscribe"
        follower = s.follower(run_id)
        assert follower.watchers == 1 and follower.active
        await s.unsubscribe(log)
        await until(lambda: not follower.active)
        assert follower.watchers == 0


async def test_closing_a_listen_stream_releases_its_watch_and_the_follow_stops(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, live(tmp_path, "auto", emu) as s:
        run_id = await s.start("endless")
        async with s.client.listen(resource_subscriptions=[f"mogplex://runs/{run_id}/events"]) as updates:
            with anyio.fail_after(WAIT_LIMIT):
                await anext(updates)
            follower = s.follower(run_id)
            assert follower.watchers == 1 and follower.active
        await until(lambda: follower.watchers == 0 and not follower.active)


async def test_twenty_listeners_cost_the_same_upstream_requests_as_one(tmp_path: Path) -> None:
    clock = ManualClock()
    async with emulator(EmulatorConfig(flavor="observed"), clock) as emu, live(tmp_path, "auto", emu) as s:
        alone, crowded = await s.start("success"), await s.start("success")
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(s.client.listen(resource_subscriptions=[f"mogplex://runs/{alone}"]))
            crowd = [f"mogplex://runs/{crowded}", f"mogplex://runs/{crowded}/events", f"mogplex://runs/{crowded}/log"]
            for n in range(20):
                await stack.enter_async_context(s.client.listen(resource_subscriptions=[crowd[n % 3]]))
            followers = s.follower(alone), s.follower(crowded)
            assert [f.watchers for f in followers] == [1, 20]
            await until(lambda: all(s.statuses(run_id, "/events/stream") == [200] for run_id in (alone, crowded)))
            clock.advance(60.0)
            await until(lambda: all(f.done and not f.active for f in followers))
        assert s.requests(alone) == s.requests(crowded) == 3, "poll, stream, final poll: whatever the crowd"


@pytest.mark.parametrize("mode", MODES)
async def test_a_429_burst_slows_the_follower_without_errors_reaching_subscribers(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig(speed=5.0)) as emu, live(tmp_path, mode, emu) as s:
        run_id = await s.start("success")
        uri = f"mogplex://runs/{run_id}"
        async with AsyncExitStack() as stack:
            if mode == "legacy":
                await s.subscribe(uri)
            else:
                await stack.enter_async_context(s.client.listen(resource_subscriptions=[uri]))
            follower = s.follower(run_id)
            await until(lambda: follower.ready.is_set())
            path = f"{API_PREFIX}/runs/{run_id}/events"
            s.emu.emulator.inject_fault("rate_limited_429", count=3, path=path, retry_after=1)
            pacer = s.state.hub.pacer(token_fingerprint(s.emu.token))
            await until(lambda: pacer.delay_needed() > 0.5)
            before = s.requests(run_id)
            assert await s.status(run_id) in ("pending", "streaming"), "a read during the pause failed"
            assert s.requests(run_id) == before, "a read during the pause went upstream instead of the cache"
            await until(lambda: follower.done)
            assert await s.status(run_id) == "success"
        answered = s.statuses(run_id) + s.statuses(run_id, "/events/stream")  # the fault's path covers both
        assert answered.count(429) == 3
        assert follower.error is None and follower.fatal is None
