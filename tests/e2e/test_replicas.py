"""Several real `serve --transport http --stateless` processes sharing one Redis, as a scaled-out deployment.

Each replica has its own state dir (as containers have); only Redis is shared. Upstream is one emulator on
loopback; counts come from its request log and run store.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from mcp import Client

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorHandle, EmulatorThread
from tests.e2e.support import REPO_ID, USER_B_TOKEN, emulator_config, http_client, text_of
from tests.interop.servers import HttpServer, http_server
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/mogplex/runs"
PROMPT = "Add pagination to the orders endpoint"


def replica_env(base_url: str, home: Path, redis_url: str | None, password: str = "") -> dict[str, str]:
    """No MOGPLEX_TOKEN: every request brings its own bearer, as behind a shared gateway."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "MOGPLEX_BASE_URL": base_url,
        "MOGPLEX_MCP_STATE_DIR": str(home / "state"),
        "MOGPLEX_LOG_LEVEL": "info",
        "MOGPLEX_RETRY_BUDGET_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    if redis_url is not None:
        env["MOGPLEX_REDIS_URL"] = redis_url
    return env


@asynccontextmanager
async def replicas(
    tmp_path: Path, emu: EmulatorHandle, redis_url: str | None, count: int, token: str = DEMO_TOKEN
) -> AsyncIterator[tuple[list[HttpServer], list[Client]]]:
    """`count` replicas, each with an MCP client (modern era: stateless, any replica can answer)."""
    async with AsyncExitStack() as stack:
        servers: list[HttpServer] = []
        for n in range(count):
            env = replica_env(emu.base_url, tmp_path / f"replica-{n}", redis_url)
            servers.append(await stack.enter_async_context(http_server(env, "--stateless")))
        clients = [await stack.enter_async_context(http_client(s.url, "auto", token)) for s in servers]
        yield servers, clients


async def start(client: Client, **arguments: Any) -> tuple[str | None, str]:
    """start_run; (runId, "") on success, (None, error text) on a tool error."""
    result = await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": PROMPT, **arguments})
    if result.is_error or result.structured_content is None:
        return None, text_of(result)
    return str(result.structured_content["run"]["runId"]), ""


async def redis_contents(url: str) -> str:
    """Every key and value the replicas wrote (the default prefix), as one text to search."""
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(match="mogplex-mcp:*"):
            kind = str(await client.type(key))
            if kind == "hash":
                value: Any = await client.hgetall(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await client.xrange(key)
            else:
                value = await client.get(key)
            parts += [key, repr(value)]
    finally:
        await client.aclose()
    return "\n".join(parts)


def unlimited_emulator() -> EmulatorThread:
    # The starts below exceed the production per-token limits on purpose: this is about duplicates.
    return EmulatorThread(emulator_config(rate_limit_per_minute=0, start_limits=(0, 0, 0), speed=5.0))


async def test_identical_starts_alternating_across_three_replicas_make_one_run(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with unlimited_emulator() as emu:
        async with replicas(tmp_path, emu, redis_server.url, 3) as (_, clients):
            outcomes: list[tuple[str | None, str]] = []

            async def one(client: Client) -> None:
                outcomes.append(await start(client))

            for round_number in range(34):  # 102 starts, three at a time, one per replica
                if round_number % 4 == 1:
                    emu.emulator.inject_fault("drop_after_commit", count=1, method="POST", path=RUNS)
                if round_number % 4 == 3:
                    emu.emulator.inject_fault("internal_500", count=1, method="POST", path=RUNS)
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tg:
                        for client in clients:
                            tg.start_soon(one, client)

        run_ids = emu.emulator.run_ids()
        started = {run_id for run_id, _ in outcomes if run_id is not None}
        failures = [message for run_id, message in outcomes if run_id is None]
        assert len(outcomes) == 102
        assert len(run_ids) == 1, f"{len(run_ids)} runs were started"
        assert started == set(run_ids)
        assert len(failures) <= 10, failures[:3]  # faults past the retries may fail a call, never duplicate
        keys = {r.idempotency_key for r in emu.emulator.requests if r.method == "POST" and r.path == RUNS}
        assert len(keys) == 1, "every replica sent the first start's Idempotency-Key"
        stored = await redis_contents(redis_server.url)
        sent_key = keys.pop()
        assert sent_key is not None and sent_key in stored  # the claim is in Redis ...
        assert DEMO_TOKEN not in stored and DEMO_TOKEN[4:] not in stored  # ... under a fingerprint, never the PAT


async def test_without_redis_each_replica_starts_its_own_run(tmp_path: Path) -> None:
    """The control: what --redis-url fixes (separate state dirs, no shared journal)."""
    with unlimited_emulator() as emu:
        async with replicas(tmp_path, emu, None, 2) as (_, clients):
            for client in clients:
                assert (await start(client))[0] is not None
        assert len(emu.emulator.run_ids()) == 2


async def test_users_stay_apart_across_replicas_and_their_runs_lists_are_shared(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with unlimited_emulator() as emu:
        async with (
            replicas(tmp_path, emu, redis_server.url, 2) as (servers, alice),
            http_client(servers[0].url, "auto", USER_B_TOKEN) as bob_on_0,
            http_client(servers[1].url, "auto", USER_B_TOKEN) as bob_on_1,
        ):
            mine = await start(alice[0], prompt="Same words, two users")
            theirs = await start(bob_on_1, prompt="Same words, two users")
            # Each replica lists the runs the other one started, for their user only.
            alice_listed = {str(r.uri) for r in (await alice[1].list_resources()).resources}
            bob_listed = {str(r.uri) for r in (await bob_on_0.list_resources()).resources}
            again = await start(alice[1], prompt="Same words, two users")
        assert mine[0] is not None and theirs[0] is not None
        assert theirs[0] != mine[0], "another user's identical start is not a retry of mine"
        assert again[0] == mine[0]
        assert len(emu.emulator.run_ids()) == 2
        assert f"mogplex://runs/{mine[0]}" in alice_listed and f"mogplex://runs/{theirs[0]}" not in alice_listed
        assert f"mogplex://runs/{theirs[0]}" in bob_listed and f"mogplex://runs/{mine[0]}" not in bob_listed


async def test_redis_lost_mid_flight_refuses_unkeyed_starts_and_reads_keep_working(tmp_path: Path) -> None:
    with unlimited_emulator() as emu, running_redis() as own_redis:
        async with replicas(tmp_path, emu, own_redis.url, 1) as (servers, (client,)):
            first, _ = await start(client)
            assert first is not None
            from tests.redis_server import stop_redis

            stop_redis(own_redis.process)
            posts_before = emu.emulator.request_count("POST", RUNS)
            with anyio.fail_after(40):  # every tool answers within its bound
                refused, message = await start(client, prompt="A new task while Redis is down")
                read = await client.call_tool("get_run", {"runId": first})
                listed = {str(r.uri) for r in (await client.list_resources()).resources}  # from this replica's journal
                keyed, _ = await start(client, prompt="Keyed start", idempotencyKey="replica-test-key-0001")
            assert refused is None and "Retry in a few seconds" in message and "idempotencyKey" in message
            assert not read.is_error, text_of(read)
            assert f"mogplex://runs/{first}" in listed
            assert keyed is not None, "an explicit idempotencyKey needs no journal"
            assert emu.emulator.request_count("POST", RUNS) == posts_before + 1  # only the keyed start went out

            with running_redis(own_redis.port):  # Redis back: the replica reconnects by itself
                with anyio.fail_after(40):
                    # The circuit breaker asks Redis again within --redis-breaker (3 s): a host's retry lands.
                    back, message = await start(client, prompt="After Redis returned")
                    while back is None and "Retry in a few seconds" in message:
                        await anyio.sleep(0.5)
                        back, message = await start(client, prompt="After Redis returned")
                assert back is not None, message
        assert "redis://127.0.0.1" in servers[0].output.text  # logged, masked (no password here)
