"""Serving the HTTP app under uvicorn: the listening socket, the gateway's connection limits, signals and drain.

`serve_http` is what `mogplex-mcp serve --transport http` runs (SIGINT/SIGTERM drain, `drain.py`);
`running_http` embeds the same server in a task group for tests and benchmarks (signals stay with the caller).
The app itself (routes, gateway, probes) is built in `http.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from types import FrameType
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette

from mogplex_mcp.server.transport.connections import GatewayConfig, connection_cap, raise_open_file_limit
from mogplex_mcp.server.transport.drain import Drain, uvicorn_grace
from mogplex_mcp.server.transport.http import HEALTH_PATH, MCP_PATH, READY_PATH, HttpOptions

logger = logging.getLogger("mogplex_mcp.http")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # Naming TCP explicitly matters: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # created as TCP, and without it a streamed answer on a kept-alive connection waits ~40 ms for the
    # client's delayed ACK (Nagle) — every modern-era call paid that.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket, path: str = MCP_PATH) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def uvicorn_server(
    app: Starlette,
    options: HttpOptions,
    *,
    log_level: str = "warning",
    max_connections: int | None = None,
    json_logs: bool = False,
) -> uvicorn.Server:
    config = GatewayConfig(
        app,
        max_connections=max_connections or options.max_connections,
        header_timeout=options.header_timeout_seconds,
        body_timeout=options.body_timeout_seconds,
        probe_slots=options.probe_slots,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=uvicorn_grace(options.graceful_shutdown_seconds, options.drain_cleanup_seconds),
        lifespan="on",
        access_log=log_level.lower() in ("debug", "info"),
        server_header=False,
        **log_config(json_logs),
    )
    return uvicorn.Server(config)


def log_config(json_logs: bool) -> dict[str, Any]:
    """uvicorn's own log set-up, or none: its loggers then reach ours, so every line is JSON."""
    return {"log_config": None} if json_logs else {}


async def serve_http(
    app: Starlette, options: HttpOptions, *, log_level: str = "warning", json_logs: bool = False
) -> None:
    """Serve until SIGINT/SIGTERM, then drain (drain.py): not ready, no new connections, requests in flight
    finish, leases handed over, the lifespan's cleanup, return normally (exit 0) — all within the grace period,
    or the process exits at once (code 1). A second signal exits at once too."""
    sock = bind_socket(options.host, options.port)
    cap = connection_cap(options.max_connections, raise_open_file_limit())
    config = uvicorn_server(app, options, log_level=log_level, max_connections=cap, json_logs=json_logs).config
    server = _EmbeddedServer(config)
    watch_connections(app, server)
    drain = Drain(
        server,
        app.state.readiness,
        options.graceful_shutdown_seconds,
        app.state.session_manager,
        flush_seconds=options.drain_flush_seconds,
    )
    loop = asyncio.get_running_loop()

    def stop(signum: int, frame: FrameType | None) -> None:
        drain.signalled(loop)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        logger.warning(
            "mogplex-mcp listening on %s (health: %s, readiness: %s)",
            url_for(sock),
            url_for(sock, HEALTH_PATH),
            url_for(sock, READY_PATH),
        )
        async with metrics_listener(app, options, json_logs=json_logs):  # nothing unless --metrics-port
            await server.serve(sockets=[sock])
        drain.finished()
        logger.warning("mogplex-mcp stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


@asynccontextmanager
async def running_http(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 0, options: HttpOptions | None = None
) -> AsyncIterator[str]:
    """Serve `app` in the background (port 0 = a free one) until the block ends; yield the MCP URL.

    For embedding (tests, benchmarks): signals stay with the caller, and the bind address is independent of
    the app's `HttpOptions`, so an app configured for a public bind can be exercised on loopback. `options`
    supplies the connection limits (default: the defaults).
    """
    sock = bind_socket(host, port)
    limits = dataclasses.replace(options or HttpOptions(), graceful_shutdown_seconds=2)
    server = _EmbeddedServer(uvicorn_server(app, limits).config)
    watch_connections(app, server)
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(10):
                while not server.started and not stopped.is_set():  # noqa: ASYNC110 - uvicorn offers only a flag
                    await anyio.sleep(0.01)
            if not server.started:
                raise RuntimeError("the HTTP server failed to start (see the log above)")
            try:
                yield url_for(sock)
            finally:
                server.should_exit = True
    finally:
        sock.close()


def watch_connections(app: Starlette, server: uvicorn.Server) -> None:
    """Export the server's open connections when the app has metrics."""
    if getattr(app.state, "metrics", None) is not None:
        from mogplex_mcp.server.transport.metrics import watch_connections as watch

        watch(app.state.metrics, server)


def metrics_listener(
    app: Starlette, options: HttpOptions, *, json_logs: bool = False
) -> AbstractAsyncContextManager[str | None]:
    """The metrics port while the block runs (transport/metrics.py; nothing when metrics are off)."""
    from mogplex_mcp.server.transport.metrics import metrics_listener as listener

    return listener(app, options, json_logs=json_logs)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program embedding it."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
