"""The Python SDK's own client in the modern era (2026-07-28, its default) against the server as a process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.interop.servers import REPO_ROOT, SERVE, http_server
from tests.interop.support import Upstream, upstream

pytestmark = pytest.mark.anyio

TOOLS = {
    "list_repos", "start_run", "get_run", "list_run_events", "wait_for_run", "cancel_run",
    "list_runs", "wait_for_runs", "continue_run",
}  # fmt: skip


async def drive(client: Client, up: Upstream) -> None:
    assert client.protocol_version == "2026-07-28"
    assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

    async def ok(name: str, **arguments: Any) -> dict[str, Any]:
        result = await client.call_tool(name, arguments, progress_callback=on_progress)
        assert not result.is_error and result.structured_content is not None, result.content
        content: dict[str, Any] = result.structured_content
        return content

    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    repo = (await ok("list_repos"))["repos"][0]["id"]
    run_id = (await ok("start_run", repoId=repo, prompt="Python client: fix a typo [scenario:success]"))["run"]["runId"]
    with anyio.fail_after(60):
        while not (await ok("wait_for_run", runId=run_id, timeoutSeconds=5))["finished"]:
            pass
    assert messages, "wait_for_run sent no progress in the modern era"
    assert (await ok("get_run", runId=run_id))["run"]["status"] == "success"
    assert (await ok("list_run_events", runId=run_id))["events"]
    endless = (await ok("start_run", repoId=repo, prompt="Python client: loop [scenario:endless]"))["run"]["runId"]
    assert (await ok("cancel_run", runId=endless))["outcome"] == "cancellation_requested"
    uris = [str(resource.uri) for resource in (await client.list_resources()).resources]
    assert f"mogplex://runs/{run_id}" in uris
    contents = (await client.read_resource(f"mogplex://runs/{run_id}/events")).contents
    assert json.loads(getattr(contents[0], "text", "{}"))["events"]
    assert len(up.emulator.emulator.run_ids()) == 2


async def test_python_client_modern_era_over_stdio(tmp_path: Path) -> None:
    async with upstream(tmp_path, node=False) as up:
        params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=up.env, cwd=str(REPO_ROOT))
        async with Client(params) as client:
            await drive(client, up)


async def test_python_client_modern_era_over_streamable_http(tmp_path: Path) -> None:
    async with upstream(tmp_path, node=False) as up, http_server(up.env) as server, Client(server.url) as client:
        await drive(client, up)
