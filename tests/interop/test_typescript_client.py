"""The official TypeScript SDK client (1.32.2) drives the real server over stdio and streamable HTTP.

The script (ts_client.mjs) records what the client saw; these tests judge it: every tool, replayed starts,
progress through `onprogress`, a wait kept alive by `resetTimeoutOnProgress` (and the control without it
timing out), resources/list and read, and a missing resource as a JSON-RPC error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.interop.servers import http_server
from tests.interop.support import NODE, Upstream, requires_node, run_node, stdio_command, upstream

pytestmark = [pytest.mark.anyio, requires_node]

TOOLS = {
    "list_repos", "start_run", "get_run", "list_run_events", "wait_for_run", "cancel_run",
    "list_runs", "wait_for_runs", "continue_run",
}  # fmt: skip


async def ts_report(up: Upstream, config: dict[str, Any]) -> dict[str, Any]:
    assert NODE is not None
    done = await run_node([NODE, "ts_client.mjs", json.dumps(config)], up.home)
    assert done.stdout.strip(), f"the TypeScript client printed no report; stderr:\n{done.stderr[-3000:]}"
    report: dict[str, Any] = done.json()
    assert report["ok"], f"{report.get('error')}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0
    return report


def judge(report: dict[str, Any]) -> None:
    calls = report["calls"]
    assert {tool["name"] for tool in report["tools"]} == TOOLS
    assert all(tool["hasOutputSchema"] and tool["annotations"] for tool in report["tools"])
    assert report["serverVersion"]["name"] == "mogplex"
    ok = ("list_repos", "start_run", "start_run_again", "wait_for_run", "get_run", "list_run_events", "cancel_run")
    for label in ok:
        assert not calls[label]["isError"], (label, calls[label]["text"])
    run = calls["start_run"]["structured"]["run"]
    assert calls["start_run_again"]["structured"]["replayed"] is True
    assert calls["start_run_again"]["structured"]["run"]["runId"] == run["runId"]
    assert calls["wait_for_run"]["structured"]["finished"] is True
    assert calls["get_run"]["structured"]["run"]["status"] == "success"
    assert calls["list_run_events"]["structured"]["untrustedContent"]
    assert calls["cancel_run"]["structured"]["outcome"] == "cancellation_requested"
    assert calls["bad_run_id"]["isError"] and "runId" in calls["bad_run_id"]["text"]

    assert report["progress"]["wait_for_run"], "no progress reached onprogress"
    kept_alive = calls["wait_reset_by_progress"]
    assert not kept_alive["isError"] and kept_alive["structured"]["finished"] is False
    assert len(report["progress"]["wait_reset_by_progress"]) >= 2
    steps = [p["progress"] for p in report["progress"]["wait_reset_by_progress"]]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), "progress must increase"
    assert report["withoutReset"]["timedOut"] is True, "without resetTimeoutOnProgress the wait should time out"

    assert f"mogplex://runs/{run['runId']}" in report["resources"]
    assert set(report["templates"]) >= {"mogplex://runs/{runId}", "mogplex://runs/{runId}/events{?after}"}
    reads = report["reads"]
    assert json.loads(reads[f"mogplex://runs/{run['runId']}"][0]["text"])["run"]["status"] == "success"
    assert json.loads(reads[f"mogplex://runs/{run['runId']}/events"][0]["text"])["events"]
    assert "success" in reads[f"mogplex://runs/{run['runId']}/log"][0]["text"]
    assert report["missingResource"]["error"] and "not found" in report["missingResource"]["error"]


async def test_typescript_client_over_stdio(tmp_path: Path) -> None:
    async with upstream(tmp_path) as up:
        judge(await ts_report(up, {"transport": "stdio", **stdio_command(up.env)}))


async def test_typescript_client_over_streamable_http(tmp_path: Path) -> None:
    async with upstream(tmp_path) as up, http_server(up.env) as server:
        judge(await ts_report(up, {"transport": "http", "url": server.url}))
