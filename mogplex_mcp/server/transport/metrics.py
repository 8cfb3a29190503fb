"""The metrics port: `/metrics` on a listener of its own, and the live state the gauges read at scrape time.

MCP callers reach only the MCP port; the metrics port binds loopback unless the operator names another
address (`--metrics-host`), so what the process is doing is never served to the strangers it serves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mogplex_mcp.config import ConfigError
from mogplex_mcp.runs.pacer import RequestPacer
from mogplex_mcp.runs.token_pacer import SharedTokenPacer
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.http import HttpOptions, is_loopback
from mogplex_mcp.server.transport.serving import _EmbeddedServer, bind_socket, log_config, url_for
from mogplex_mcp.server.transport.sessions import SessionRegistry
from mogplex_mcp.telemetry import hooks
from mogplex_mcp.telemetry.metrics import CONTENT_TYPE, PrometheusRecorder

METRICS_PATH = "/metrics"
logger = logging.getLogger("mogplex_mcp.http")


def metrics_app(metrics: PrometheusRecorder) -> Starlette:
    """The ASGI app of the metrics port: `GET /metrics` in the Prometheus text format, nothing else."""

    async def scrape(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route(METRICS_PATH, scrape, methods=["GET"])])


def instrument_app(app: Starlette, metrics: PrometheusRecorder, sessions: SessionRegistry) -> None:
    """Install `metrics` as the process's recorder while `app` runs, and export the gateway's live counts."""
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        with hooks.installed(metrics):
            async with inner(app_) as value:
                yield value

    app.router.lifespan_context = lifespan
    streams = OpenStreams()
    metrics.watch("http_event_streams_open", lambda: streams.count)
    app.add_middleware(StreamCounter, streams=streams)
    metrics.watch("http_sessions_open", lambda: len(sessions))
    metrics.watch("http_sessions_evicted", lambda: sessions.evicted)
    metrics.watch("http_sessions_refused", lambda: sessions.refused)
    metrics.watch("http_unauthenticated_requests", lambda: sessions.unauthenticated)


def watch_state(metrics: PrometheusRecorder, state: AppState) -> None:
    """Export the server's live state: upstream pools, followers, leases, follower budgets (aggregated)."""
    gate, hub = state.pool.gate, state.hub
    metrics.watch("upstream_requests_in_flight", lambda: gate.requests_in_flight)
    metrics.watch("upstream_event_streams_open", lambda: gate.streams_open)
    metrics.watch("runs_followed", lambda: hub.active_count)
    metrics.watch("followers_held", lambda: hub.follower_count)
    metrics.watch("follow_leases_held", lambda: hub.leases_held)
    metrics.watch("pacer_tokens", lambda: len(hub.pacers))
    metrics.watch("pacer_tokens_exhausted", lambda: sum(1 for left in _budgets_left(hub.pacers) if left == 0))
    metrics.watch(
        "pacer_budget_remaining_min", lambda: min(_budgets_left(hub.pacers), default=hub.settings.requests_per_minute)
    )


def _budgets_left(pacers: list[RequestPacer]) -> list[int]:
    """Requests left in each token's sliding minute, 0 while a 429 pause holds it. A budget kept in Redis is
    not read at scrape time (that would be a Redis call per token): shared pacers are left out."""
    left = []
    for pacer in pacers:
        if isinstance(pacer, SharedTokenPacer):
            continue
        left.append(0 if pacer.delay_needed() > 0 else max(0, pacer.per_minute - pacer.sent_in_window))
    return left


class OpenStreams:
    """How many server-sent event streams are open right now."""

    count = 0


class StreamCounter:
    """ASGI middleware counting responses that are server-sent event streams while they are open."""

    def __init__(self, app: ASGIApp, streams: OpenStreams) -> None:
        self.app = app
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = False

        async def watch(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and _is_event_stream(message):
                counted = True
                self.streams.count += 1
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if counted:
                self.streams.count -= 1


def _is_event_stream(message: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
        for name, value in message.get("headers", [])
    )


@asynccontextmanager
async def metrics_listener(
    app: Starlette, options: HttpOptions, *, json_logs: bool = False
) -> AsyncIterator[str | None]:
    """Serve the app's metrics on `options.metrics_host:metrics_port` while the block runs; yield their URL
    (None when metrics are off)."""
    metrics = getattr(app.state, "metrics", None)
    if metrics is None or options.metrics_port is None:
        yield None
        return
    try:
        sock = bind_socket(options.metrics_host, options.metrics_port)
    except OSError as exc:
        where = f"{options.metrics_host}:{options.metrics_port}"
        raise ConfigError(f"--metrics-port: cannot listen on {where} ({exc.strerror}); pick another port") from None
    config = uvicorn.Config(
        metrics_app(metrics),
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        **log_config(json_logs),
    )
    server = _EmbeddedServer(config)
    reach = "" if is_loopback(options.metrics_host) else " — reachable beyond this machine, as --metrics-host asks"
    url = url_for(sock, METRICS_PATH)
    logger.warning("metrics at %s%s", url, reach)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield url
            finally:
                server.should_exit = True
    finally:
        sock.close()


def watch_connections(metrics: PrometheusRecorder, server: uvicorn.Server) -> None:
    metrics.watch("http_connections_open", lambda: len(server.server_state.connections))


def watching_state(metrics: PrometheusRecorder, then: Callable[[AppState], None] | None) -> Callable[[AppState], None]:
    """An `on_state` for `create_server` that exports the state's live counts, then calls `then`."""

    def on_state(state: AppState) -> None:
        watch_state(metrics, state)
        if then is not None:
            then(state)

    return on_state
