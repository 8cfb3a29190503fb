"""One follower per run across real `serve --stateless` replicas on one Redis: the upstream cost, the shared
budget, failover when the leader is SIGKILLed, and per-token isolation of the feeds.

Counts come from the emulator's request log, per run path; no wall-clock limits are asserted.
"""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorHandle, EmulatorThread
from tests.e2e.support import USER_B_TOKEN, emulator_config, http_client, text_of
from tests.e2e.test_replicas import RUNS, redis_contents, replica_env, start
from tests.interop.servers import HttpServer, http_server
from tests.redis_server import RedisServer, running_redis, stop_redis
from tests.server.test_shared_pacer import fresh_database
from tests.server.transport.test_notifications import Heard

pytestmark = pytest.mark.anyio


def emulator(speed: float) -> EmulatorThread:
    """Two users (the demo token's and B's), whose runs the upstream keeps apart."""
    owners = {DEMO_TOKEN: "alice", USER_B_TOKEN: "bob"}
    return EmulatorThread(emulator_config(rate_limit_per_minute=0, start_limits=(0, 0, 0), speed=speed, owners=owners))


async def fleet(
    stack: AsyncExitStack,
    tmp_path: Path,
    emu: EmulatorHandle,
    redis_url: str | None,
    count: int,
    clients_on: list[int] | None = None,
    **env: str,
) -> tuple[list[HttpServer], list[Client]]:
    """`count` replicas and a client on each (or on those in `clients_on`)."""
    servers: list[HttpServer] = []
    for n in range(count):
        environment = {**replica_env(emu.base_url, tmp_path / f"replica-{n}", redis_url), **env}
        servers.append(await stack.enter_async_context(http_server(environment, "--stateless")))
    chosen = range(count) if clients_on is None else clients_on
    clients = [await stack.enter_async_context(http_client(servers[n].url, "auto", DEMO_TOKEN)) for n in chosen]
    return servers, clients


async def wait_until_finished(client: Client, run_id: str) -> str:
    """wait_for_run until the run is over; its final status."""
    while True:
        result = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 20})
        assert not result.is_error, text_of(result)
        run = (result.structured_content or {})["run"]
        if run["terminal"]:
            return str(run["status"])


def upstream_requests(emu: EmulatorHandle, run_id: str) -> int:
    return emu.emulator.request_count("GET", f"{RUNS}/{run_id}")


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "control"])
async def test_ten_waiters_on_three_replicas_cost_the_upstream_one_follower(
    tmp_path: Path, redis_server: RedisServer, shared: bool
) -> None:
    redis_url = await fresh_database(redis_server, 6) if shared else None
    with emulator(speed=10.0) as emu:
        async with AsyncExitStack() as stack:
            _, clients = await fleet(stack, tmp_path, emu, redis_url, 3)
            alone, _ = await start(clients[0], prompt="One watcher")
            assert alone is not None
            with anyio.fail_after(60):
                await wait_until_finished(clients[0], alone)
            crowded, _ = await start(clients[0], prompt="Ten watchers")
            assert crowded is not None
            statuses: list[str] = []

            async def watch(client: Client) -> None:
                statuses.append(await wait_until_finished(client, crowded))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(10):
                        tg.start_soon(watch, clients[n % 3])
        one, ten = upstream_requests(emu, alone), upstream_requests(emu, crowded)
    assert statuses == ["success"] * 10
    if shared:
        assert ten <= one + 2, f"10 watchers on 3 replicas cost {ten} requests, one watcher {one}"
    else:
        assert ten > 2 * one, f"the control: each replica follows by itself ({ten} vs {one})"


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "control"])
async def test_three_replicas_following_ten_runs_stay_within_the_tokens_budget(
    tmp_path: Path, redis_server: RedisServer, shared: bool
) -> None:
    budget = 12  # scaled down from 40: the whole test lasts well under the 60 s window
    redis_url = await fresh_database(redis_server, 7) if shared else None
    with emulator(speed=1.0) as emu:
        async with AsyncExitStack() as stack:
            _, clients = await fleet(stack, tmp_path, emu, redis_url, 3, MOGPLEX_FOLLOW_REQUESTS_PER_MINUTE=str(budget))
            run_ids = [(await start(clients[0], prompt=f"[scenario:endless] Run {n}"))[0] for n in range(10)]
            followed_before = emu.emulator.request_count("GET", f"{RUNS}/")
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for run_id in run_ids:
                        for client in clients:
                            assert run_id is not None
                            tg.start_soon(client.call_tool, "wait_for_run", {"runId": run_id, "timeoutSeconds": 3})
            followed = emu.emulator.request_count("GET", f"{RUNS}/") - followed_before
    if shared:
        assert 0 < followed <= budget, f"3 replicas sent {followed} follower requests; the budget is {budget}"
    else:
        assert followed > budget, "the control: without Redis each replica spends a budget of its own"


async def test_a_waiter_on_another_replica_sees_the_run_finish_after_the_leader_is_killed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 8)
    with emulator(speed=6.0) as emu:
        async with AsyncExitStack() as stack:
            servers, clients = await fleet(stack, tmp_path, emu, redis_url, 2, clients_on=[1])
            run_id, _ = await start(clients[0], prompt="[scenario:slow_start] Survive a crash")
            assert run_id is not None
            outcome: list[str] = []
            finished = anyio.Event()

            async def on_the_leader() -> None:
                # Its own client, in its own task: the replica is killed under it, and only this task may fail.
                with contextlib.suppress(Exception):
                    async with http_client(servers[0].url, "auto", DEMO_TOKEN) as doomed:
                        await doomed.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 30})

            async def on_the_other_replica() -> None:
                outcome.append(await wait_until_finished(clients[0], run_id))
                finished.set()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(on_the_leader)
                    while upstream_requests(emu, run_id) == 0:  # noqa: ASYNC110 - the emulator's log is all there is
                        await anyio.sleep(0.05)  # replica 0 follows the run: it holds the lease
                    tg.start_soon(on_the_other_replica)
                    await anyio.sleep(0.5)
                    before_kill = upstream_requests(emu, run_id)
                    servers[0].process.kill()  # SIGKILL: no release, the lease has to run out
                    await servers[0].process.wait()
                    await finished.wait()
                    tg.cancel_scope.cancel()
            after_kill = upstream_requests(emu, run_id) - before_kill
    assert outcome == ["success"]
    assert after_kill >= 1, "replica 1 took the lease over and followed the run upstream itself"
    assert emu.emulator.run_ids() == [run_id]


async def test_another_token_cannot_read_a_run_through_the_feed_of_another_replica(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 9)
    with emulator(speed=5.0) as emu:
        async with AsyncExitStack() as stack:
            servers, alice = await fleet(stack, tmp_path, emu, redis_url, 2)
            bob = await stack.enter_async_context(http_client(servers[1].url, "auto", USER_B_TOKEN))
            run_id, _ = await start(alice[0], prompt="Alice's private run")
            assert run_id is not None
            with anyio.fail_after(60):
                await wait_until_finished(alice[0], run_id)  # replica 0 led, its feed is in Redis
                peek = await bob.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 3})
                events = await bob.call_tool("list_run_events", {"runId": run_id})
            stored = await redis_contents(redis_url)
    assert peek.is_error and events.is_error
    assert "Alice's private run" not in text_of(peek) + text_of(events)
    assert DEMO_TOKEN not in stored and USER_B_TOKEN not in stored


async def test_a_listener_on_a_replica_that_does_not_lead_hears_the_runs_updates(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 10)
    with emulator(speed=5.0) as emu:
        async with AsyncExitStack() as stack:
            _, clients = await fleet(stack, tmp_path, emu, redis_url, 2)
            run_id, _ = await start(clients[0], prompt="Watched from afar")
            assert run_id is not None
            uri = f"mogplex://runs/{run_id}"
            heard = Heard()
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait_until_finished, clients[0], run_id)
                    while upstream_requests(emu, run_id) == 0:  # noqa: ASYNC110 - the emulator's log is all there is
                        await anyio.sleep(0.05)  # replica 0 follows the run: it holds the lease
                    async with clients[1].listen(resource_subscriptions=[uri]) as stream:
                        tg.start_soon(heard.collect, stream)
                        await heard.wait(lambda: heard.events.count(ResourceUpdated(uri)) >= 2)
                        tg.cancel_scope.cancel()
            read = await clients[1].read_resource(uri)
        requests = upstream_requests(emu, run_id)
    assert heard.events.count(ResourceUpdated(uri)) >= 2, "replica 1 relayed the leader's changes"
    assert read.contents, "and its resource reads answer from the fed follower"
    assert requests <= 4, f"{requests} upstream requests: one follower's, not two"


async def test_redis_lost_mid_flight_every_replica_follows_by_itself_and_waits_end(tmp_path: Path) -> None:
    with emulator(speed=6.0) as emu, running_redis() as own_redis:
        async with AsyncExitStack() as stack:
            servers, clients = await fleet(stack, tmp_path, emu, own_redis.url, 2)
            run_id, _ = await start(clients[0], prompt="[scenario:slow_start] Outlive Redis")
            assert run_id is not None
            for client in clients:  # both replicas follow it: one upstream, one from the feed
                first = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 1})
                assert not first.is_error, text_of(first)
            stop_redis(own_redis.process)
            statuses: list[str] = []

            async def finish(client: Client) -> None:
                statuses.append(await wait_until_finished(client, run_id))

            with anyio.fail_after(90):  # every wait answers within its bound, Redis or not
                async with anyio.create_task_group() as tg:
                    for client in clients:
                        tg.start_soon(finish, client)
    assert statuses == ["success", "success"]
    for server in servers:
        assert server.output.text.count("following runs on this replica by itself") <= 1, "logged once"
    assert sum("following runs on this replica by itself" in s.output.text for s in servers) >= 1
