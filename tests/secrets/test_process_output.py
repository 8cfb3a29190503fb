"""The server as a child process, logging at DEBUG: its stdout (the protocol) and stderr (logs) never hold a secret."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from tests.interop.servers import raw_stdio_server, server_env
from tests.secrets.test_nothing_leaks import FORBIDDEN, PAT, UNKNOWN_RUN

pytestmark = pytest.mark.anyio


def content_of(response: dict[str, object]) -> str:
    return json.dumps(response, ensure_ascii=False)


async def test_stdout_and_stderr_of_a_debug_logging_server_hold_no_secret(tmp_path: Path) -> None:
    upstream = EmulatorConfig(speed=60.0, tokens={PAT: frozenset({"read", "write"})})
    async with running_emulator(upstream) as emu:
        env = server_env(emu.base_url, PAT, tmp_path)
        async with raw_stdio_server(env) as server:
            repos = await server.request("tools/call", {"name": "list_repos", "arguments": {}})
            repo = repos["result"]["structuredContent"]["repos"][0]["id"]
            prompt = "Rotate the deploy keys [scenario:success]"
            started = await server.request(
                "tools/call", {"name": "start_run", "arguments": {"repoId": repo, "prompt": prompt}}
            )
            run_id = started["result"]["structuredContent"]["run"]["runId"]
            with anyio.fail_after(60):
                for attempt in range(30):
                    waited = await server.request(
                        "tools/call",
                        {
                            "name": "wait_for_run",
                            "arguments": {"runId": run_id, "timeoutSeconds": 5},
                            "_meta": {"progressToken": f"wait-{attempt}"},
                        },
                    )
                    if waited["result"]["structuredContent"]["finished"]:
                        break
            events = await server.request(
                "tools/call", {"name": "list_run_events", "arguments": {"runId": run_id, "includePayload": True}}
            )
            assert "Authenticated the Mogplex CLI with [redacted]" in content_of(events)
            await server.request("resources/list")
            await server.request("resources/read", {"uri": f"mogplex://runs/{run_id}/log"})
            missing = await server.request("tools/call", {"name": "get_run", "arguments": {"runId": UNKNOWN_RUN}})
            assert missing["result"]["isError"] is True
            emu.emulator.inject_fault("unavailable_503", count=50, retry_after=30)
            await server.request("tools/call", {"name": "get_run", "arguments": {"runId": run_id}})
            emu.emulator.clear_faults()
        progress = [m for m in server.messages if m.get("method") == "notifications/progress"]
        assert progress, "no progress notifications: the stdout check would miss them"
    output = server.output
    assert b"DEBUG" in output.stderr, "the server logged nothing at DEBUG: the stderr check would prove nothing"
    leaked = [secret for secret in FORBIDDEN if secret in output.text]
    assert not leaked, f"leaked to stdout/stderr: {leaked}"
    for line in output.stdout.splitlines():
        json.loads(line)  # stdout carries the protocol and nothing else
