"""Issue 23, "also measured": a Redis restarted without persistence between two identical starts.

The restarted Redis has forgotten every start claim; this replica's journal has not, so the identical
start retried after the restart reuses the first key and the upstream replays the first run: one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.server.app import create_server
from tests.redis_server import start_redis, stop_redis
from tests.server.harness import FAST_FOLLOW, settings_for, text_of

pytestmark = pytest.mark.anyio


async def _start_like_a_host(client: Client, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call start_run until it answers, as a host does after "retry in a few seconds"."""
    with anyio.fail_after(30):
        while True:
            result = await client.call_tool("start_run", arguments)
            if not result.is_error:
                content: dict[str, Any] = result.structured_content or {}
                return content
            assert "Retry in a few seconds" in text_of(result), text_of(result)
            await anyio.sleep(0.5)


async def test_an_identical_start_across_a_redis_restart_without_persistence_makes_one_run(tmp_path: Path) -> None:
    redis_server = start_redis()
    try:
        async with running_emulator(EmulatorConfig(speed=1.0)) as emu:
            settings = settings_for(emu, tmp_path, redis_url=redis_server.url)
            async with Client(create_server(settings, follow=FAST_FOLLOW)) as client:
                repos = await client.call_tool("list_repos", {})
                repo = (repos.structured_content or {})["repos"][0]["id"]
                arguments = {"repoId": repo, "prompt": "Once, across a Redis restart [scenario:success]"}
                first = await _start_like_a_host(client, arguments)

                stop_redis(redis_server.process)  # no AOF, no RDB: every claim is gone
                redis_server = start_redis(redis_server.port)

                second = await _start_like_a_host(client, arguments)
                assert second["replayed"], second
                assert second["run"]["runId"] == first["run"]["runId"]
                assert second["idempotencyKey"] == first["idempotencyKey"]
                assert len(emu.emulator.store.runs()) == 1
    finally:
        stop_redis(redis_server.process)
