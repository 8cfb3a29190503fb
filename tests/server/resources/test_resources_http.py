"""Subscriptions over streamable HTTP, where one server lifespan (and one follower hub) serves many clients."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, ManualClock
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app
from mogplex_mcp.server.transport.serving import running_http
from tests.server.harness import FAST_FOLLOW, settings_for
from tests.server.resources.test_run_resources import WAIT_LIMIT, Inbox, emulator, live, until

pytestmark = pytest.mark.anyio


@dataclass
class Gateway:
    """One HTTP server in front of an emulator, and a way to start runs through it."""

    url: str
    emu: EmulatorHandle
    states: list[AppState]

    def follower(self, run_id: str) -> RunFollower:
        follower = self.states[-1].hub.get(self.emu.token, run_id)
        assert follower is not None
        return follower

    def statuses(self, run_id: str, suffix: str) -> list[int | None]:
        path = f"/api/v1/mogplex/runs/{run_id}{suffix}"
        return [record.status for record in self.emu.emulator.log.snapshot() if record.path == path]

    def requests(self, run_id: str) -> int:
        return self.emu.emulator.request_count(path_prefix=f"/api/v1/mogplex/runs/{run_id}")


@asynccontextmanager
async def gateway(tmp_path: Path, emu: EmulatorHandle) -> AsyncIterator[Gateway]:
    states: list[AppState] = []
    settings = settings_for(emu, tmp_path / "http-state")
    app = build_http_app(settings, HttpOptions(), follow=FAST_FOLLOW, on_state=states.append)
    async with running_http(app) as url:
        yield Gateway(url, emu, states)


@asynccontextmanager
async def subscriber(url: str, uri: str) -> AsyncIterator[Inbox]:
    """A handshake-era client over HTTP, subscribed to `uri` for the duration of the block."""
    inbox = Inbox()
    async with Client(url, mode="legacy", message_handler=inbox) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.subscribe_resource(uri)
        yield inbox


async def start_run(tmp_path: Path, emu: EmulatorHandle, scenario: str, n: int) -> str:
    """Start a run through a throwaway in-process server (the journal is not the gateway's)."""
    async with live(tmp_path / f"starter-{n}", "legacy", emu) as s:
        return await s.start(scenario)


async def test_twenty_handshake_clients_on_one_run_cost_the_same_requests_as_one(tmp_path: Path) -> None:
    clock = ManualClock()
    async with emulator(EmulatorConfig(flavor="observed"), clock) as emu, gateway(tmp_path, emu) as g:
        alone, crowded = await start_run(tmp_path, emu, "success", 1), await start_run(tmp_path, emu, "success", 2)
        async with AsyncExitStack() as stack:
            inboxes = [await stack.enter_async_context(subscriber(g.url, f"mogplex://runs/{alone}"))]
            for n in range(20):
                suffix = ("", "/events", "/log")[n % 3]
                inboxes.append(await stack.enter_async_context(subscriber(g.url, f"mogplex://runs/{crowded}{suffix}")))
            followers = g.follower(alone), g.follower(crowded)
            assert [f.watchers for f in followers] == [1, 20]
            await until(lambda: all(g.statuses(run_id, "/events/stream") == [200] for run_id in (alone, crowded)))
            clock.advance(60.0)
            await until(lambda: all(f.done and not f.active for f in followers))
            for inbox in inboxes:  # the last update (at the terminal status) reaches every subscriber
                await inbox.wait(lambda: len(inbox.updated) >= 1)  # noqa: B023 - waited on at once
        assert g.requests(alone) == g.requests(crowded) == 3, "poll, stream, final poll: whatever the crowd"
        await until(lambda: all(f.watchers == 0 for f in followers))


async def test_a_vanished_handshake_subscriber_releases_its_watch_and_the_follow_stops(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, gateway(tmp_path, emu) as g:
        run_id = await start_run(tmp_path, emu, "endless", 1)
        async with subscriber(g.url, f"mogplex://runs/{run_id}/log") as inbox:
            await inbox.wait(lambda: len(inbox.updated) >= 2)
            follower = g.follower(run_id)
            assert follower.watchers == 1 and follower.active
        await until(lambda: follower.watchers == 0 and not follower.active)


async def test_a_dropped_listen_stream_over_http_releases_its_watch(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig(speed=20.0)) as emu, gateway(tmp_path, emu) as g:
        run_id = await start_run(tmp_path, emu, "endless", 1)
        async with Client(g.url) as client:
            async with client.listen(resource_subscriptions=[f"mogplex://runs/{run_id}"]) as updates:
                with anyio.fail_after(WAIT_LIMIT):
                    await anext(updates)
                follower = g.follower(run_id)
                assert follower.watchers == 1
            await until(lambda: follower.watchers == 0 and not follower.active)
