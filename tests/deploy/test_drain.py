"""SIGTERM drain, for real: `serve --transport http` child processes, an emulator upstream, real MCP clients.

One process: waits end at once with a true "still running", a start whose POST is in flight finishes and is
recorded, the process exits 0 within its grace period; the grace period's end (or a second SIGTERM) exits at
once, and a start whose POST was sent is still recorded (a retry after the restart replays it). Replicas on one
Redis: a draining leader releases its follow lease at once, so another replica follows before it would expire.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from mcp import Client

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorHandle, EmulatorThread
from mogplex_mcp.runs.shared_follow import LEASE_SECONDS
from tests.e2e.support import REPO_ID, emulator_config, http_client, text_of
from tests.e2e.test_replicas import replica_env
from tests.interop.servers import HttpServer, http_server
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/mogplex/runs"


def slow_emulator(speed: float) -> EmulatorThread:
    """Runs that last 14 simulated seconds (28 s at speed 0.5); no request or start limits."""
    return EmulatorThread(emulator_config(rate_limit_per_minute=0, start_limits=(0, 0, 0), speed=speed))


async def start(client: Client, prompt: str) -> str:
    result = await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": prompt})
    assert not result.is_error and result.structured_content is not None, text_of(result)
    return str(result.structured_content["run"]["runId"])


async def exit_code(server: HttpServer, limit: float) -> int:
    with anyio.fail_after(limit):
        return await server.process.wait()


async def until_posts(emu: EmulatorHandle, count: int) -> None:
    with anyio.fail_after(20):
        while emu.emulator.request_count("POST", RUNS) < count:  # noqa: ASYNC110 - the emulator's log has no event
            await anyio.sleep(0.02)


async def test_sigterm_ends_waits_finishes_a_start_in_flight_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "replica"
    with slow_emulator(0.5) as emu:
        env = replica_env(emu.base_url, home, None)
        async with http_server(env, "--grace-period", "20") as server, http_client(server.url, "auto", DEMO_TOKEN) as c:
            running = await start(c, "Add pagination to the orders endpoint")
            emu.emulator.inject_fault("delay", count=1, method="POST", path=RUNS, delay=3.0)
            results: dict[str, Any] = {}

            async def wait() -> None:
                results["wait"] = await c.call_tool("wait_for_run", {"runId": running, "timeoutSeconds": 45})

            async def second_start() -> None:
                results["start"] = await c.call_tool("start_run", {"repoId": REPO_ID, "prompt": "Fix the login bug"})

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                tg.start_soon(second_start)
                await until_posts(emu, 2)  # the second start's POST is on its way (held 3 s upstream)
                await anyio.sleep(0.3)
                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
            code = await exit_code(server, 25)

        waited, started = results["wait"], results["start"]
        assert not waited.is_error, text_of(waited)
        assert waited.structured_content is not None and waited.structured_content["finished"] is False
        assert time.monotonic() - signalled < 25 and waited.structured_content["waitedSeconds"] < 40
        assert not started.is_error, text_of(started)
        assert code == 0, server.output.text[-2000:]
        assert "draining (SIGTERM)" in server.output.text
        second_run = started.structured_content["run"]["runId"] if started.structured_content else None

        # The restarted server knows that start: the same call replays it instead of starting a third run.
        async with http_server(env) as again, http_client(again.url, "auto", DEMO_TOKEN) as c:
            replay = await c.call_tool("start_run", {"repoId": REPO_ID, "prompt": "Fix the login bug"})
        assert replay.structured_content is not None and replay.structured_content["run"]["runId"] == second_run
        assert replay.structured_content["replayed"] is True
        assert len(emu.emulator.run_ids()) == 2


@pytest.mark.parametrize("how", ["second SIGTERM", "grace period over"])
async def test_a_forced_exit_is_immediate_and_a_start_whose_post_was_sent_is_still_recorded(
    tmp_path: Path, how: str
) -> None:
    home = tmp_path / "replica"
    with slow_emulator(1.0) as emu:
        env = replica_env(emu.base_url, home, None)
        emu.emulator.inject_fault("delay", count=1, method="POST", path=RUNS, delay=6.0)
        grace = "20" if how == "second SIGTERM" else "2"  # 2 s: the watchdog (2 s flush at most) ends it by 4 s
        async with http_server(env, "--grace-period", grace) as server:
            outcome: list[Any] = []

            async def held_start() -> None:
                try:
                    async with http_client(server.url, "auto", DEMO_TOKEN) as c:
                        outcome.append(
                            await c.call_tool("start_run", {"repoId": REPO_ID, "prompt": "Refactor billing"})
                        )
                except Exception as exc:  # the connection closes under the call: that is the point
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(held_start)
                await until_posts(emu, 1)
                server.process.send_signal(signal.SIGTERM)
                if how == "second SIGTERM":
                    await anyio.sleep(0.3)
                    server.process.send_signal(signal.SIGTERM)
                code = await exit_code(server, 5)  # the POST is held 6 s upstream: this did not wait for it
                with anyio.fail_after(10):
                    while not outcome:  # noqa: ASYNC110 - the client notices the closed connection
                        await anyio.sleep(0.05)
        assert isinstance(outcome[0], Exception), "the caller saw the call fail (and will retry it)"
        if how == "second SIGTERM":
            assert code == 1, server.output.text[-2000:]
            assert "exiting now (a second signal)" in server.output.text
        else:  # uvicorn cancels what is left 3 s before the end, so the cleanup runs; else the watchdog exits
            assert "timeout graceful shutdown exceeded" in server.output.text or code == 1, server.output.text[-2000:]

        # The caller retries after the restart: the same Idempotency-Key goes out, so still one run.
        async with http_server(env) as again, http_client(again.url, "auto", DEMO_TOKEN) as c:
            retried = await start(c, "Refactor billing")
        with anyio.fail_after(20):
            while len(emu.emulator.run_ids()) < 1 or emu.emulator.request_count("POST", RUNS) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await anyio.sleep(6.5)  # the first POST, held upstream, lands too
        keys = {r.idempotency_key for r in emu.emulator.requests if r.method == "POST" and r.path == RUNS}
        assert len(keys) == 1, "the restarted server sent the key the first attempt had recorded"
        assert emu.emulator.run_ids() == [retried]


async def lease_watch(url: str) -> tuple[redis.asyncio.Redis, str]:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    with anyio.fail_after(20):
        while not (keys := [key async for key in client.scan_iter(match="mogplex-mcp:lease:*")]):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return client, keys[0]


async def test_a_draining_leader_hands_its_follow_lease_over_at_once(tmp_path: Path, redis_server: RedisServer) -> None:
    with slow_emulator(1.0) as emu:
        a_env = replica_env(emu.base_url, tmp_path / "a", redis_server.url)
        b_env = replica_env(emu.base_url, tmp_path / "b", redis_server.url)
        async with (
            http_server(a_env, "--stateless", "--grace-period", "20") as a,
            http_server(b_env, "--stateless") as b,
            http_client(a.url, "auto", DEMO_TOKEN) as on_a,
            http_client(b.url, "auto", DEMO_TOKEN) as on_b,
        ):
            run_id = await start(on_a, "Add pagination to the orders endpoint")
            answers: list[dict[str, Any]] = []

            async def wait_until_finished(client: Client) -> None:
                while True:
                    result = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 30})
                    assert not result.is_error, text_of(result)
                    assert result.structured_content is not None
                    if result.structured_content["finished"]:
                        answers.append(result.structured_content)
                        return

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_until_finished, on_a)  # A follows upstream: it holds the lease
                rdb, lease_key = await lease_watch(redis_server.url)
                leader = await rdb.get(lease_key)
                tg.start_soon(wait_until_finished, on_b)  # B reads A's feed
                await anyio.sleep(1.5)
                tg.cancel_scope.cancel()  # A's waiter: its replica is going away (see the proxy test for retries)

            renewed_until = time.monotonic() + (await rdb.pttl(lease_key)) / 1000
            a.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(LEASE_SECONDS + 5):
                while (holder := await rdb.get(lease_key)) in (leader, None):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            taken_at = time.monotonic()
            assert await exit_code(a, 25) == 0
            with anyio.fail_after(40):
                await wait_until_finished(on_b)
            await rdb.aclose()
        assert holder != leader
        # B led before A's last lease would have run out: it was released, not left to expire.
        assert taken_at < renewed_until, f"taken {taken_at - renewed_until:.2f} s after the old lease's expiry"
        assert "handing the run over to another replica" in a.output.text
        assert answers[-1]["run"]["runId"] == run_id and answers[-1]["finished"] is True


async def test_open_streams_end_cleanly_so_the_drain_does_not_wait_for_the_grace_period(tmp_path: Path) -> None:
    """A `subscriptions/listen` stream (modern era) and a session's GET stream (handshake era) would each hold a
    connection open until the grace period ran out; the drain ends both, and the process exits 0 at once."""
    with slow_emulator(0.5) as emu:
        env = replica_env(emu.base_url, tmp_path / "replica", None)
        async with (
            http_server(env, "--grace-period", "25") as server,
            http_client(server.url, "auto", DEMO_TOKEN) as modern,
            http_client(server.url, "legacy", DEMO_TOKEN) as legacy,
        ):
            run_id = await start(modern, "Keep a listener busy")
            await legacy.list_tools()  # the session is open, with its GET stream
            ended: list[str] = []

            async def listen() -> None:
                async with modern.listen(resource_subscriptions=[f"mogplex://runs/{run_id}"]) as stream:
                    async for _ in stream:
                        pass
                ended.append("listen stream ended")

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await anyio.sleep(1.0)
                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                code = await exit_code(server, 20)
                exited = time.monotonic() - signalled
                with anyio.fail_after(10):
                    while not ended:  # noqa: ASYNC110 - the listen task says when its stream ended
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
    assert code == 0, server.output.text[-2000:]
    assert ended == ["listen stream ended"], "the listener got the stream's final result, not a dropped connection"
    # uvicorn would have waited 22 of the 25 s for the open streams; it did not wait for them at all.
    assert exited < 12, f"exited {exited:.1f} s after SIGTERM"
    assert "timeout graceful shutdown exceeded" not in server.output.text


@pytest.mark.parametrize("tool", ["wait_for_run", "wait_for_runs"])
@pytest.mark.parametrize("shared", [False, True], ids=["alone", "on Redis"])
async def test_a_wait_whose_first_read_the_drain_interrupts_still_gets_the_run(
    tmp_path: Path, shared: bool, tool: str, request: pytest.FixtureRequest
) -> None:
    """The drain comes while a wait's follower is still reading the run for the first time (its request held
    upstream; on Redis the follower leads the run and hands it over): the caller still gets the run as it is,
    "still running", a true answer to ask again with — not an error that it could not be read."""
    redis_url = request.getfixturevalue("redis_server").url if shared else None
    with slow_emulator(0.5) as emu:
        env = replica_env(emu.base_url, tmp_path / "replica", redis_url)
        async with http_server(env, "--stateless", "--grace-period", "20") as server:
            async with http_client(server.url, "auto", DEMO_TOKEN) as c:
                run_id = await start(c, "Add pagination to the orders endpoint")
                events = f"{RUNS}/{run_id}/events"
                emu.emulator.inject_fault("delay", count=1, method="GET", path=events, delay=4.0)
                answers: list[Any] = []

                async def wait() -> None:
                    ids = {"runId": run_id} if tool == "wait_for_run" else {"runIds": [run_id]}
                    answers.append(await c.call_tool(tool, {**ids, "timeoutSeconds": 30}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    with anyio.fail_after(20):
                        while emu.emulator.request_count("GET", events) < 1:  # noqa: ASYNC110 - no event to await
                            await anyio.sleep(0.02)
                    await anyio.sleep(0.3)  # the follower's first read is on its way, held upstream for 4 s
                    server.process.send_signal(signal.SIGTERM)
            code = await exit_code(server, 25)

    waited = answers[0]
    assert not waited.is_error, text_of(waited)
    content = waited.structured_content
    assert content is not None
    run = content["run"] if tool == "wait_for_run" else content["runs"][0]
    assert run["runId"] == run_id and run["status"] in ("pending", "running"), run  # read, not "not read yet"
    assert not run["terminal"] and content["finished"] in (False, [])
    assert content["waitedSeconds"] < 4, "answered at the drain, not after the held read or the 30 s wait"
    assert code == 0, server.output.text[-2000:]
    if shared:  # the path the rolling restart took: the run's lease was handed over before its first read
        assert "handing the run over to another replica" in server.output.text
