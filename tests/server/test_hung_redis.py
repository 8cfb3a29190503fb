"""Issue 23, finding 2: a Redis that accepts but never answers cannot stretch any tool past its bound.

Redis here is a real `redis-server`, SIGSTOPped mid-test (its sockets stay open and its kernel still accepts
connections, but nothing is answered), and a loopback listener that accepts and never answers. Each tool's
Redis commands share one budget per call (`redis_call_budget_seconds`), reads fall back to this replica's
journal at once, and after one timeout the circuit breaker stops asking until a probe succeeds.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.redis.connection import SLOW_READS_TO_OPEN
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.runs.store_budget import store_budget
from mogplex_mcp.server.app import create_server
from tests.redis_server import RedisServer, running_redis
from tests.server.harness import FAST_FOLLOW, settings_for, text_of

pytestmark = pytest.mark.anyio

# The documented bound with a hung Redis (docs/scale.md "Budgets"): the tool's own upstream work (here a fast
# emulator, well under a second) plus at most redis_call_budget_seconds (2 s by default) of Redis.
CALL_BUDGET = 2.0
SLACK = 2.0
FP = "f" * 32


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def _timed(client: Client, tool: str, bound: float, **arguments: Any) -> tuple[Any, float]:
    began = time.monotonic()
    with anyio.fail_after(bound):  # the tool's documented bound, not a speed check
        result = await client.call_tool(tool, arguments)
    return result, time.monotonic() - began


async def test_every_tool_answers_within_its_bound_and_truly_while_redis_hangs(tmp_path: Path) -> None:
    with running_redis() as redis_server:
        async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
            settings = settings_for(emu, tmp_path, redis_url=redis_server.url, redis_call_budget_seconds=CALL_BUDGET)
            async with Client(create_server(settings, follow=FAST_FOLLOW)) as client:
                repo = (await client.call_tool("list_repos", {})).structured_content["repos"][0]["id"]
                first = await client.call_tool(
                    "start_run", {"repoId": repo, "prompt": "Before the hang [scenario:success]", "createBranch": True}
                )
                run_id = first.structured_content["run"]["runId"]
                await client.call_tool("wait_for_runs", {"runIds": [run_id], "timeoutSeconds": 30})

                with stopped(redis_server):
                    bound = CALL_BUDGET + SLACK
                    listed, _ = await _timed(client, "list_runs", bound)
                    assert not listed.is_error, text_of(listed)
                    assert [r["runId"] for r in listed.structured_content["runs"]] == [run_id]  # from the journal

                    got, _ = await _timed(client, "get_run", bound, runId=run_id)
                    assert not got.is_error and got.structured_content["run"]["status"] == "success"

                    waited, _ = await _timed(client, "wait_for_run", 1.0 + bound, runId=run_id, timeoutSeconds=1)
                    assert not waited.is_error, text_of(waited)

                    refused, _ = await _timed(
                        client, "start_run", bound, repoId=repo, prompt="During the hang [scenario:success]"
                    )
                    assert refused.is_error and "Nothing was sent. Retry in a few seconds" in text_of(refused)

                    keyed, _ = await _timed(
                        client, "start_run", bound, repoId=repo, prompt="Keyed [scenario:success]",
                        idempotencyKey="hung-redis-key-1",
                    )  # fmt: skip
                    assert not keyed.is_error, text_of(keyed)

                    follow_up, _ = await _timed(client, "continue_run", bound, runId=run_id, prompt="More")
                    assert follow_up.is_error and "Retry in a few seconds" in text_of(follow_up)
                    runs_made = len(emu.emulator.store.runs())

                # Redis answers again: after the breaker's pause a probe closes it and starts are shared again.
                await anyio.sleep(settings.redis_breaker_seconds + 0.2)
                again = await client.call_tool(
                    "start_run", {"repoId": repo, "prompt": "After the hang [scenario:success]"}
                )
                assert not again.is_error, text_of(again)
                assert len(emu.emulator.store.runs()) == runs_made + 1


class SilentListener:
    """A loopback TCP listener that accepts connections and never answers; counts the bytes it is sent."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.received = 0
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._socket.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
                conn.setblocking(False)
                self._connections.append(conn)
            except TimeoutError:
                pass
            for conn in self._connections:
                with suppress(BlockingIOError, OSError):
                    self.received += len(conn.recv(65536))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._connections:
            conn.close()
        self._socket.close()


async def test_the_breaker_stops_asking_a_redis_that_timed_out_and_probes_later() -> None:
    listener = SilentListener()
    limits = redis_backend.RedisLimits(command_seconds=0.5, read_seconds=0.2, breaker_seconds=1.0)
    store = redis_backend.connect(f"redis://127.0.0.1:{listener.port}/0", limits=limits)
    runs = redis_backend.RedisKnownRuns(store)
    claims = redis_backend.RedisStartClaims(store)
    try:
        with anyio.fail_after(15):
            for _ in range(SLOW_READS_TO_OPEN):  # reads with a local copy elsewhere give up at read_seconds
                began = time.monotonic()
                with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.2 s"):
                    await runs.known_runs(FP)
                assert time.monotonic() - began < limits.command_seconds
            await anyio.sleep(0.2)
            sent = listener.received
            assert sent > 0, "the reads reached the silent server"

            for _ in range(20):  # open: nothing is sent, every call fails at once
                with pytest.raises(StoreUnavailableError, match="failed moments ago"):
                    await claims.claim_key(FP, "request")
            await anyio.sleep(0.2)
            assert listener.received == sent

            await anyio.sleep(limits.breaker_seconds)  # half-open: one probe goes out, and it times out again
            with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.5 s"):
                await claims.claim_key(FP, "request")
            await anyio.sleep(0.2)
            assert listener.received > sent
            with pytest.raises(StoreUnavailableError, match="failed moments ago"):
                await runs.known_runs(FP)
    finally:
        await store.aclose()
        listener.close()


async def test_one_call_budget_covers_every_redis_command_in_it() -> None:
    listener = SilentListener()
    limits = redis_backend.RedisLimits(command_seconds=1.0, read_seconds=1.0, breaker_seconds=0.01)
    store = redis_backend.connect(f"redis://127.0.0.1:{listener.port}/0", limits=limits)
    runs = redis_backend.RedisKnownRuns(store)
    failures = 0
    try:
        with anyio.fail_after(10):
            began = time.monotonic()
            with store_budget(1.5):
                for _ in range(5):  # five reads, each alone allowed 1 s: together they get 1.5 s
                    await anyio.sleep(0.02)  # past the breaker's pause: each one is a probe that times out
                    try:
                        await runs.known_runs(FP)
                    except StoreUnavailableError:
                        failures += 1
            spent = time.monotonic() - began
    finally:
        await store.aclose()
        listener.close()
    assert failures == 5
    assert spent < 5 * limits.read_seconds, "the five reads shared one budget"


async def test_the_budget_counts_time_on_redis_not_the_calls_own_time(redis_server: RedisServer) -> None:
    store = redis_backend.connect(redis_server.url, prefix=f"test-{os.getpid()}-{time.monotonic_ns()}:")
    runs = redis_backend.RedisKnownRuns(store)
    try:
        with store_budget(0.5):
            await anyio.sleep(1.0)  # e.g. a wait_for_run's upstream wait: not Redis time
            await runs.remember_run(FP, "run-after-a-long-wait", status="success")  # still recorded in Redis
            assert await runs.is_known(FP, "run-after-a-long-wait")
    finally:
        await store.aclose()


async def test_one_slow_read_falls_back_but_does_not_stop_starts() -> None:
    listener = SilentListener()
    limits = redis_backend.RedisLimits(command_seconds=0.5, read_seconds=0.2, breaker_seconds=5.0)
    store = redis_backend.connect(f"redis://127.0.0.1:{listener.port}/0", limits=limits)
    try:
        with anyio.fail_after(10):
            with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.2 s"):
                await redis_backend.RedisKnownRuns(store).known_runs(FP)  # a hiccup: this read falls back
            with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.5 s"):
                await redis_backend.RedisStartClaims(store).claim_key(FP, "request")  # still asked, not refused
    finally:
        await store.aclose()
        listener.close()


async def test_a_leader_keeps_its_lease_through_a_redis_pause_shorter_than_the_lease() -> None:
    from mogplex_mcp.runs.followed_run import RunFollower
    from mogplex_mcp.runs.shared_follow import LEASE_SECONDS, SharedFollowing

    with running_redis() as redis_server:
        limits = redis_backend.RedisLimits(command_seconds=0.3, read_seconds=0.2, breaker_seconds=0.5)
        store = redis_backend.connect(redis_server.url, limits=limits)
        lease = redis_backend.RedisFollowLease(store, holder="replica-a", lease_seconds=LEASE_SECONDS)
        following = SharedFollowing(lease, redis_backend.RedisFollowFeed(store))
        follower = RunFollower("run-1", FP, 100)
        done = anyio.Event()
        led: list[bool] = []

        async def lead() -> None:  # following upstream, until the test ends it
            led.append(True)
            await done.wait()

        async def announce(*_: Any) -> None:
            return None

        try:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(following.follow, follower, lead, announce, lambda _: done.is_set())
                    await anyio.sleep(0.5)
                    assert following.leads(follower)
                    with stopped(redis_server):  # a pause well inside the 4 s lease: renewals fail meanwhile
                        await anyio.sleep(1.5)
                    await anyio.sleep(LEASE_SECONDS + 1.0)  # past when the lease would have run out unrenewed
                    holder = await store.client.get(store.key("lease", f"follow:{FP}:run-1"))
                    assert holder == "replica-a", "the leader renewed its lease after the pause"
                    assert following.leads(follower) and led == [True]
                    done.set()
        finally:
            await store.aclose()
