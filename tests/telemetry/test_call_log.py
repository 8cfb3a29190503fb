"""The per-call log line and tool-call metrics over stdio-like in-memory clients (both eras): one line per call,
the outcome an operator alerts on (a crash is not an ordinary error), and nothing a user wrote."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from mcp import Client

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.server.app import create_server
from mogplex_mcp.telemetry.hooks import installed
from mogplex_mcp.telemetry.metrics import PrometheusRecorder
from tests.server.harness import FAST_FOLLOW, MODES, Mode, settings_for
from tests.telemetry.support import Scrape

pytestmark = pytest.mark.anyio
PROMPT = "Log-line test: tidy the changelog generator"
FIELD = re.compile(r"(\w+)=(\S+)")


@pytest.mark.parametrize("mode", MODES)
async def test_one_line_per_call_with_its_outcome_and_a_crash_counted_as_such(
    tmp_path: Path, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mogplex_mcp.calls")
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        server = create_server(settings_for(emu, tmp_path / "state"), follow=FAST_FOLLOW)

        async def explode() -> str:
            """A tool with a bug in it."""
            raise RuntimeError(f"internal detail that must stay in the server: {PROMPT}")

        server.add_tool(explode, name="explode")
        with installed(PrometheusRecorder()) as metrics:
            async with Client(server, mode=mode) as client:
                repo_id = (await client.call_tool("list_repos", {})).structured_content["repos"][0]["id"]
                started = await client.call_tool("start_run", {"repoId": repo_id, "prompt": PROMPT})
                crashed = await client.call_tool("explode", {})
                refused = await client.call_tool("get_run", {"runId": "../../etc/passwd"})
    assert crashed.is_error and refused.is_error and not started.is_error
    run_id = started.structured_content["run"]["runId"]

    lines = [r for r in caplog.records if r.name == "mogplex_mcp.calls"]
    fields = [dict(FIELD.findall(r.getMessage())) for r in lines]
    assert [(f["tool"], f["outcome"]) for f in fields] == [
        ("list_repos", "ok"),
        ("start_run", "ok"),
        ("explode", "crashed"),
        ("get_run", "error"),
    ]
    assert all(r.levelno == logging.INFO for r in lines)
    assert fields[1]["run_id"] == run_id and "run_id" not in fields[3]
    assert all(float(f["duration_ms"]) >= 0 and re.fullmatch(r"[0-9a-f]{16}", f["request_id"]) for f in fields)
    assert len({f["request_id"] for f in fields}) == 4
    assert isinstance(metrics, PrometheusRecorder)
    scrape = Scrape(metrics.exposition().decode())
    assert scrape.value("mogplex_mcp_tool_calls_total", tool="explode", outcome="crashed") == 1
    everything = "\n".join(r.getMessage() for r in lines) + scrape.text
    for secret in (emu.token, PROMPT, "internal detail", "passwd"):
        assert secret not in everything
