"""Telemetry's cost per call: `get_run` over HTTP on three servers — plain, with `--metrics-port`, and with
metrics plus OpenTelemetry traces exported over OTLP to a loopback sink."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
from mcp import Client

from bench.emulator_proc import emulator_process
from bench.measure import Summary
from bench.per_call import Path_, _measure, _tool_call
from bench.report import Section
from bench.servers import http_server, server_env

PLAIN = "plain"
METRICS = "with --metrics-port"
TRACED = "with --metrics-port and OTLP traces"
# Server CPU added per call. Metrics are a few dictionary updates per call; a sampled trace adds ~5 spans and
# their export. CPU, not wall time, is the target: on 2 shared cores wall-time medians of separate processes
# drift by more than what is measured here.
TARGET_CPU_MS = {METRICS: 0.3, TRACED: 1.0}


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads and drops what it is sent (the export's cost stays in the server)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def run(calls: int) -> Section:
    section = Section(
        key="telemetry",
        title="Telemetry overhead",
        method=(
            f"`get_run` on a running run over streamable HTTP (modern era), {calls} calls per server after "
            "warm-up, one at a time, interleaved round-robin across three real server processes so load on the "
            f"shared machine hits them alike: {PLAIN}; {METRICS} (Prometheus recorder installed, nobody "
            f"scraping); {TRACED} (`OTEL_EXPORTER_OTLP_ENDPOINT` at a loopback sink that drops what it gets, every "
            "trace sampled, spans batched and exported by the SDK). Added = median minus the plain server's "
            "median; CPU = the server process's CPU time per call (from /proc), the target."
        ),
    )
    with (
        emulator_process(rate_limit=0) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-telemetry-") as tmp,
        otlp_sink() as sink,
    ):
        async with httpx2.AsyncClient(timeout=30) as control:
            (run_id,) = await emulator.create_runs(control, 1, "endless")
        arguments: dict[str, object] = {"runId": run_id}
        traced_env = {
            **server_env(emulator, Path(tmp) / "traced"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        with (
            http_server(server_env(emulator, Path(tmp) / "plain")) as plain,
            http_server(server_env(emulator, Path(tmp) / "metrics"), args=("--metrics-port", "0")) as metered,
            http_server(traced_env, args=("--metrics-port", "0")) as traced,
        ):
            async with AsyncExitStack() as stack:
                paths: dict[str, Path_] = {}
                for name, served in ((PLAIN, plain), (METRICS, metered), (TRACED, traced)):
                    client = await stack.enter_async_context(Client(served.url, mode="auto"))
                    paths[name] = Path_(_tool_call(client, "get_run", arguments), served.pid)
                await _measure(paths, calls)
    _report(section, paths, calls)
    return section


def _report(section: Section, paths: dict[str, Path_], calls: int) -> None:
    base = Summary.of(paths[PLAIN].wall_ms)
    base_cpu = paths[PLAIN].server_cpu_s / calls * 1000
    section.add(
        f"`get_run`, {PLAIN}: median / p99",
        f"{base.median:.2f} / {base.p99:.2f} ms (server CPU {base_cpu:.2f} ms/call)",
    )
    for name in (METRICS, TRACED):
        summary = Summary.of(paths[name].wall_ms)
        added = summary.median - base.median
        cpu = paths[name].server_cpu_s / calls * 1000
        section.add(
            f"`get_run`, {name}: server CPU added per call (wall: added median, p99, ratio)",
            f"+{cpu - base_cpu:.2f} ms ({cpu:.2f} ms/call; wall {added:+.2f} ms, p99 {summary.p99:.2f} ms, "
            f"{summary.median / base.median:.2f}×)",
            f"≤ +{TARGET_CPU_MS[name]} ms CPU",
            cpu - base_cpu <= TARGET_CPU_MS[name],
        )
    if section.misses:
        section.notes.append(
            "A miss here: the CPU is spent in the span SDK (ids, attributes, the batch processor's queue) and in "
            "prometheus_client's locks; sampling fewer traces (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, "
            "`OTEL_TRACES_SAMPLER_ARG=0.1`) cuts the traced share in proportion."
        )
