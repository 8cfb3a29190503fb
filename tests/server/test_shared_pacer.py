"""With --redis-url, followers on every replica draw one token's requests from one budget."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
import redis.asyncio
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.server.app import create_server
from tests.redis_server import RedisServer
from tests.server.harness import settings_for

pytestmark = pytest.mark.anyio

BUDGET = 5
# Followers that would poll every 50 ms, i.e. far past the budget, if nothing held them back.
EAGER = FollowSettings(
    poll_interval=0.05, max_poll_interval=0.05, linger_seconds=5.0, requests_per_minute=BUDGET, use_stream=False
)


async def fresh_database(server: RedisServer, index: int) -> str:
    url = server.url.rsplit("/", 1)[0] + f"/{index}"
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "local"])
async def test_two_replicas_following_one_run_stay_within_one_budget(
    tmp_path: Path, redis_server: RedisServer, shared: bool
) -> None:
    redis_url = await fresh_database(redis_server, 5) if shared else None
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu, AsyncExitStack() as stack:
        clients: list[Client] = []
        for n in range(2):
            settings = settings_for(emu, tmp_path / f"replica-{n}", redis_url=redis_url)
            clients.append(await stack.enter_async_context(Client(create_server(settings, follow=EAGER))))
        repo = (await clients[0].call_tool("list_repos", {})).structured_content or {}
        started = await clients[0].call_tool(
            "start_run", {"repoId": repo["repos"][0]["id"], "prompt": "[scenario:endless] Keep going"}
        )
        run_id = (started.structured_content or {})["run"]["runId"]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(client.call_tool, "wait_for_run", {"runId": run_id, "timeoutSeconds": 2})

        polls = emu.emulator.request_count("GET", f"/api/v1/mogplex/runs/{run_id}/events")
    if shared:
        assert polls == BUDGET, "both replicas together spent exactly the token's budget, no more"
    else:
        assert polls > BUDGET, "the control: without Redis each replica spends a budget of its own"
