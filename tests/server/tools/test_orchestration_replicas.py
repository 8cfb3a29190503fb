"""With --redis-url, list_runs and continue_run see what another replica started: runs, facts, outcomes."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.server.app import create_server
from tests.redis_server import RedisServer
from tests.server.harness import FAST_FOLLOW, settings_for
from tests.server.test_shared_pacer import fresh_database

pytestmark = pytest.mark.anyio


async def _ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error and result.structured_content is not None, result.content
    content: dict[str, Any] = result.structured_content
    return content


async def test_a_follow_up_on_one_replica_carries_what_another_replica_sent(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 6)
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu, AsyncExitStack() as stack:
        first, second = [
            await stack.enter_async_context(
                Client(
                    create_server(settings_for(emu, tmp_path / f"replica-{n}", redis_url=redis_url), follow=FAST_FOLLOW)
                )
            )
            for n in range(2)
        ]
        repo = (await _ok(first, "list_repos"))["repos"][0]["id"]
        started = await _ok(
            first, "start_run", repoId=repo, prompt="Shared task [scenario:success]", createBranch=True,
            conversationId="conv-shared",
        )  # fmt: skip
        run_id = started["run"]["runId"]
        waited = await _ok(first, "wait_for_runs", runIds=[run_id], timeoutSeconds=30)
        assert waited["finished"] == [run_id]

        listed = await _ok(second, "list_runs")
        assert [run["runId"] for run in listed["runs"]] == [run_id]
        assert listed["runs"][0]["pullRequestUrl"].startswith("https://"), "the outcome is shared too"
        follow_up = await _ok(second, "continue_run", runId=run_id, prompt="Now the docs.")
        entry = emu.emulator.store.key(follow_up["idempotencyKey"])
        assert entry is not None
        sent = json.loads(entry.fingerprint)
        assert sent["conversation_id"] == "conv-shared" and sent["base_branch"] == started["run"]["workingBranch"]
