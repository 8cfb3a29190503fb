"""The service as an operator runs it: `serve --transport http` in a subprocess with JSON logs, the metrics
port and an OTLP endpoint from the standard `OTEL_*` variables — every line parses, spans arrive, no secrets."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorThread
from mogplex_mcp.server.transport.serving import running_http
from tests.e2e.support import emulator_config, error, http_client, ok, server_env
from tests.telemetry.support import Scrape

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Operator test: make the nightly export idempotent"


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A loopback OTLP/HTTP trace receiver (what a collector's port 4318 does), keeping what it was sent."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        received.append(export)
        return Response(b"", media_type="application/x-protobuf")

    async with running_http(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        yield url.removesuffix("/mcp"), received


class Stderr:
    """Everything the child writes to stderr, read as it comes (so the pipe never fills)."""

    def __init__(self) -> None:
        self.text = ""

    async def drain(self, process: Process) -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            self.text += chunk.decode()

    async def find(self, needle: str, key: str = "message") -> dict[str, Any]:
        with anyio.fail_after(20):
            while True:
                for entry in self.entries():
                    if needle in str(entry.get(key, "")):
                        return entry
                await anyio.sleep(0.05)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()[:-1] if line.strip()]  # last may be partial


async def test_json_logs_metrics_port_and_otlp_traces_of_the_real_command(tmp_path: Path) -> None:
    async with otlp_receiver() as (collector, received):
        with EmulatorThread(emulator_config()) as emu:
            env = server_env(
                emu.base_url,
                tmp_path,
                token=None,
                PATH="/usr/bin:/bin",
                OTEL_EXPORTER_OTLP_ENDPOINT=collector,
                OTEL_SERVICE_NAME="mcp-gateway-test",
                OTEL_BSP_SCHEDULE_DELAY="100",
            )
            args = ["--port", "0", "--log-level", "info", "--log-format", "json", "--metrics-port", "0"]
            command = [sys.executable, "-m", "mogplex_mcp", "serve", "--transport", "http", *args]
            stderr = Stderr()
            async with await anyio.open_process(command, env=env, cwd=ROOT) as process, anyio.create_task_group() as tg:
                tg.start_soon(stderr.drain, process)
                url = (await stderr.find("listening on"))["message"].split()[3]
                metrics_url = (await stderr.find("metrics at"))["message"].split()[2]
                async with http_client(url, "legacy", DEMO_TOKEN) as alice:
                    repo_id = (await ok(alice, "list_repos"))["repos"][0]["id"]
                    run_id = (await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT))["run"]["runId"]
                    await error(alice, "get_run", runId="not-a-uuid")
                async with httpx2.AsyncClient(timeout=10) as http:
                    scrape = Scrape((await http.get(metrics_url)).text)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(20):
                    assert await process.wait() == 0
            records = emu.emulator.log.snapshot()

    # Logs: every line is one JSON object; one tool_call line per call, with what an operator greps for.
    lines = [json.loads(line) for line in stderr.text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    calls = [line for line in lines if line.get("event") == "tool_call"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [
        ("list_repos", "ok"),
        ("start_run", "ok"),
        ("get_run", "error"),
    ]
    assert calls[1]["run_id"] == run_id and "run_id" not in calls[2]  # a rejected id is never logged
    assert all(c["level"] == "INFO" and c["duration_ms"] > 0 and len(c["request_id"]) == 16 for c in calls)
    assert all(c["trace_id"] for c in calls)  # tracing is on: each line points at its trace

    # Metrics, from the real flag's port.
    assert scrape.value("mogplex_mcp_tool_calls_total", tool="start_run", outcome="ok") == 1

    # Traces reached the collector at exit, under the operator's service name, and match what Mogplex saw.
    spans = {
        span.name: span
        for export in received
        for resource_spans in export.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    }
    assert {"tools/call start_run", "POST /runs", "GET /repos", "journal claim_key"} <= set(spans)
    names = {
        attribute.value.string_value
        for export in received
        for resource_spans in export.resource_spans
        for attribute in resource_spans.resource.attributes
        if attribute.key == "service.name"
    }
    assert names == {"mcp-gateway-test"}
    post = spans["POST /runs"]
    assert post.trace_id == spans["tools/call start_run"].trace_id
    sent = next(r for r in records if r.method == "POST" and r.path.endswith("/runs"))
    assert sent.traceparent is not None and sent.traceparent.split("-")[1:3] == [
        post.trace_id.hex(),
        post.span_id.hex(),
    ]
    assert calls[1]["trace_id"] == post.trace_id.hex()

    # Nothing secret anywhere an operator's pipeline would store.
    exported = b"".join(export.SerializeToString() for export in received)
    for secret in (DEMO_TOKEN, PROMPT):
        assert secret not in stderr.text and secret not in scrape.text
        assert secret.encode() not in exported


@pytest.mark.parametrize(
    ("args", "env", "told"),
    [
        (["--metrics-port", "9464"], {}, "--metrics-port needs --transport http"),
        (["--transport", "http", "--metrics-port", "70000"], {}, "port number 0..65535"),
        (["--log-format", "yaml"], {}, "invalid choice: 'yaml'"),
        ([], {"MOGPLEX_LOG_FORMAT": "yaml"}, "MOGPLEX_LOG_FORMAT must be one of text, json"),
        (
            [],
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTLP/HTTP (http/protobuf)",
        ),
    ],
)
async def test_bad_telemetry_settings_stop_the_start_with_a_clear_message(
    tmp_path: Path, args: list[str], env: dict[str, str], told: str
) -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "mogplex_mcp", "serve", *args],
        check=False,
        env={"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert told in stderr and "Traceback" not in stderr


async def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    async with otlp_receiver() as (collector, _):  # any listening loopback port will do
        port = collector.rsplit(":", 1)[1]
        result = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "mogplex_mcp",
                "serve",
                "--transport",
                "http",
                "--port",
                "0",
                "--metrics-port",
                port,
            ],
            check=False,
            env={"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("off", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}, {}])
async def test_tracing_is_on_only_when_an_endpoint_is_set_and_not_switched_off(
    tmp_path: Path, off: dict[str, str]
) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"} if off else {}  # never reached: nothing traced
    env = {"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **endpoint, **off}
    command = [sys.executable, "-m", "mogplex_mcp", "serve", "--transport", "http", "--port", "0"]
    stderr = Stderr()
    async with await anyio.open_process(command, env=env, cwd=ROOT) as process, anyio.create_task_group() as tg:
        tg.start_soon(stderr.drain, process)
        with anyio.fail_after(20):
            while "listening on" not in stderr.text:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # the task draining stderr offers no event to wait on
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0
    assert "traces: exporting" not in stderr.text
