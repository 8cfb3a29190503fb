"""MCP Inspector 2.12.0's CLI (a client nobody here wrote) drives the real server over stdio and HTTP, both eras.

Each stdio call spawns a fresh server, as the Inspector does: state that survives between calls (the start
journal, the known-runs list) is what a host restarting the server would see too. The modern era is driven
over HTTP only, where one server answers every call (a stdio spawn per call costs seconds on small machines).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.interop.servers import SERVE, http_server
from tests.interop.support import NPX, Upstream, requires_node, run_node, upstream

pytestmark = [pytest.mark.anyio, requires_node]

TOOLS = {
    "list_repos", "start_run", "get_run", "list_run_events", "wait_for_run", "cancel_run",
    "list_runs", "wait_for_runs", "continue_run",
}  # fmt: skip
TOOL_IS_ERROR = 5  # the Inspector CLI's exit code when a tool returns isError


@dataclass
class Inspector:
    """`npx mcp-inspector --cli --format json -q <target> --method ...` against one target."""

    up: Upstream
    target: list[str]
    era: str | None = None

    async def run(self, method: str, *extra: str, expect_exit: int = 0) -> Any:
        assert NPX is not None
        era = ["--protocol-era", self.era] if self.era else []
        command = [NPX, "--no-install", "mcp-inspector", "--cli", "--format", "json", "-q", *self.target]
        done = await run_node([*command, "--method", method, *era, *extra], self.up.home)
        assert done.returncode == expect_exit, f"{method} {extra}: exit {done.returncode}\n{done.stderr[-2000:]}"
        return done.json()

    async def tool(self, name: str, arguments: dict[str, Any] | None = None, *, expect_exit: int = 0) -> Any:
        args = ["--tool-name", name, "--tool-args-json", json.dumps(arguments or {})]
        answer = await self.run("tools/call", *args, expect_exit=expect_exit)
        if expect_exit == 0:
            assert not answer["result"].get("isError"), answer
            return answer["result"]["structuredContent"]
        return answer


def stdio_target(up: Upstream) -> list[str]:
    return [arg for key, value in up.env.items() for arg in ("-e", f"{key}={value}")] + SERVE


async def every_tool_and_resource(inspector: Inspector) -> None:
    found: dict[str, Any] = {}

    async def tools_list() -> None:
        found["tools"] = (await inspector.run("tools/list"))["result"]["tools"]

    async def repos() -> None:
        found["repo"] = (await inspector.tool("list_repos"))["repos"][0]["id"]

    async with anyio.create_task_group() as tg:  # independent calls side by side: each spawns its own client
        tg.start_soon(tools_list)
        tg.start_soon(repos)
    assert {tool["name"] for tool in found["tools"]} == TOOLS
    assert all(tool.get("outputSchema") and tool.get("annotations") for tool in found["tools"])

    repo = found["repo"]
    task = {"repoId": repo, "prompt": f"Inspector ({inspector.era or 'legacy'}): bump a dependency [scenario:success]"}
    started = await inspector.tool("start_run", task)
    run_id = started["run"]["runId"]

    async def start_again() -> None:
        again = await inspector.tool("start_run", task)
        assert again["replayed"] is True and again["run"]["runId"] == run_id, "a repeated start made a second run"

    async def wait() -> None:
        with anyio.fail_after(60):
            while not (await inspector.tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 5}))["finished"]:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_again)
        tg.start_soon(wait)
    assert len(inspector.up.emulator.emulator.run_ids()) == 1

    async def finished_run() -> None:
        assert (await inspector.tool("get_run", {"runId": run_id}))["run"]["status"] == "success"
        events = await inspector.tool("list_run_events", {"runId": run_id, "limit": 5})
        assert events["events"] and events["untrustedContent"]

    async def cancel_and_refuse() -> None:
        endless = await inspector.tool(
            "start_run", {"repoId": repo, "prompt": "Inspector: keep going [scenario:endless]"}
        )
        cancelled = await inspector.tool("cancel_run", {"runId": endless["run"]["runId"]})
        assert cancelled["outcome"] == "cancellation_requested"
        refused = await inspector.tool("get_run", {"runId": "a/cancel"}, expect_exit=TOOL_IS_ERROR)
        assert "isError" in json.dumps(refused)

    async def resources() -> None:
        uris = [r["uri"] for r in (await inspector.run("resources/list"))["result"]["resources"]]
        assert f"mogplex://runs/{run_id}" in uris
        for suffix in ("", "/events", "/log"):
            contents = (await inspector.run("resources/read", "--uri", f"mogplex://runs/{run_id}{suffix}"))["result"]
            assert run_id in contents["contents"][0]["text"]

    async with anyio.create_task_group() as tg:
        for part in (finished_run, cancel_and_refuse, resources):
            tg.start_soon(part)


async def modern_era_basics(inspector: Inspector) -> None:
    assert {t["name"] for t in (await inspector.run("tools/list"))["result"]["tools"]} == TOOLS
    repo = (await inspector.tool("list_repos"))["repos"][0]["id"]
    run_id = (await inspector.tool("start_run", {"repoId": repo, "prompt": "Modern era start"}))["run"]["runId"]
    assert (await inspector.tool("get_run", {"runId": run_id}))["run"]["runId"] == run_id
    contents = (await inspector.run("resources/read", "--uri", f"mogplex://runs/{run_id}"))["result"]["contents"]
    assert json.loads(contents[0]["text"])["run"]["runId"] == run_id


async def test_inspector_cli_over_stdio(tmp_path: Path) -> None:
    async with upstream(tmp_path) as up:
        await every_tool_and_resource(Inspector(up, stdio_target(up)))


async def test_inspector_cli_over_streamable_http(tmp_path: Path) -> None:
    async with upstream(tmp_path) as up, http_server(up.env) as server:
        await every_tool_and_resource(Inspector(up, [server.url]))


async def test_inspector_cli_over_streamable_http_in_the_modern_era(tmp_path: Path) -> None:
    async with upstream(tmp_path) as up, http_server(up.env) as server:
        await modern_era_basics(Inspector(up, [server.url], era="modern"))
