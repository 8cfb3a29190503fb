"""Streamable HTTP: the ASGI app (`/mcp`, `/healthz`, `/readyz`), DNS-rebinding rules, and serving it under uvicorn.

Over HTTP this server is a multi-user gateway: every request brings its own `Authorization: Bearer mog_…`,
which `state.token_from_request` forwards upstream and never stores. Falling back to `MOGPLEX_TOKEN` for
requests without a bearer is allowed only when the server is local-only (a loopback bind answering to loopback
names only), where every caller is on this machine. In front of `/mcp` sits the gateway (`gateway.py`: 401
without a bearer, sessions bound to their token and capped); under it, uvicorn with the connection limits of
`connections.py` (header deadline, connection cap; the probes have slots of their own). SIGTERM drains
(`drain.py`). With `HttpOptions.oauth` (`--public-url`) the OAuth front door (`oauth/`) adds its routes and
lets the gateway resolve access tokens to their PAT. Metrics, when asked for, are served on a port of their own
(`metrics.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import signal
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mogplex_mcp import __version__
from mogplex_mcp.config import ConfigError, Settings
from mogplex_mcp.runs.readiness import CHECK_TIMEOUT_SECONDS, Readiness
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.bodies import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
    DEFAULT_MAX_BODY_BYTES_PER_CLIENT,
    BodyBudget,
    BodyLimits,
)
from mogplex_mcp.server.transport.connections import (
    PROBE_SLOTS,
    GatewayConfig,
    connection_cap,
    raise_open_file_limit,
)
from mogplex_mcp.server.transport.drain import (
    CLEANUP_RESERVE_SECONDS,
    DEFAULT_GRACE_SECONDS,
    FORCED_FLUSH_SECONDS,
    Drain,
    uvicorn_grace,
)
from mogplex_mcp.server.transport.gateway import Gateway, GatewayPolicy
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions
from mogplex_mcp.server.transport.protocol_checks import ProtocolChecks
from mogplex_mcp.server.transport.sessions import SessionLimits, SessionRegistry
from mogplex_mcp.server.transport.strangers import StrangerLimits, StrangerRequests

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from mogplex_mcp.telemetry.metrics import PrometheusRecorder

logger = logging.getLogger("mogplex_mcp.http")

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
ANY_HOST = "*"
_LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
_LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


@dataclass(frozen=True)
class HttpOptions:
    """How the HTTP transport listens and whom it lets in."""

    host: str = "127.0.0.1"
    port: int = 8000
    stateless: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # SIGTERM: how long the drain may take before the process exits regardless (drain.py).
    graceful_shutdown_seconds: float = DEFAULT_GRACE_SECONDS
    # Probes and drain (cli_ops.py): a readiness check's bound, connections kept for probes past the cap,
    # a forced exit's last-write bound, and the part of the grace period kept for the lifespan's cleanup.
    readiness_timeout_seconds: float = CHECK_TIMEOUT_SECONDS
    probe_slots: int = PROBE_SLOTS
    drain_flush_seconds: float = FORCED_FLUSH_SECONDS
    drain_cleanup_seconds: float = CLEANUP_RESERVE_SECONDS
    # The gateway's limits (docs/http.md, "Threat model"): sessions per token and in all, idle expiry,
    # connections, and how long a request's headers and body may take.
    max_sessions_per_token: int = 32
    max_sessions: int = 1000
    session_idle_minutes: float = 10.0
    max_connections: int = 1000
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # Request bodies: one request's, one client address's in flight, and all in flight (transport/bodies.py).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_body_bytes_per_client: int = DEFAULT_MAX_BODY_BYTES_PER_CLIENT
    max_body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    # Callers whose token upstream has not accepted (yet): sessions and requests in flight, per address and in all.
    max_unverified_sessions_per_client: int = 16
    max_unverified_sessions: int = 128
    max_unverified_requests_per_client: int = 32
    max_unverified_requests: int = 128
    # Prometheus metrics on a listener of their own (docs/operations.md); None: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # The OAuth front door (`--public-url`, docs/oauth.md); None: off, bearers only.
    oauth: OAuthOptions | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(options: HttpOptions) -> TransportSecuritySettings:
    """The Host/Origin allow-lists: loopback names on a loopback bind, plus whatever was allowed explicitly.

    A non-loopback bind has no safe default (the server cannot know the name clients reach it by), so it
    must name its hosts; `--allowed-host '*'` turns the check off on purpose (e.g. behind a proxy that does it).
    """
    if ANY_HOST in options.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = list(_LOOPBACK_HOSTS) if options.loopback else []
    for host in options.allowed_hosts:
        hosts.append(host)
        if ":" not in host.rsplit("]", 1)[-1]:  # a bare name: accept it on any port too
            hosts.append(f"{host}:*")
    if not hosts:
        raise ConfigError(
            f"--host {options.host} is not a loopback address: name the host(s) clients use with --allowed-host "
            "(e.g. --allowed-host mcp.example.com), or pass --allowed-host '*' if a proxy in front checks Host. "
            "This protects against DNS-rebinding attacks."
        )
    origins = list(_LOOPBACK_ORIGINS) if options.loopback else []
    origins.extend(options.allowed_origins)
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def local_only(options: HttpOptions) -> bool:
    """Bound to loopback and answering to loopback names only: no other machine can be the caller.

    Naming extra hosts means something (a reverse proxy, a tunnel) brings remote callers in.
    """
    return options.loopback and not options.allowed_hosts


def http_settings(settings: Settings, options: HttpOptions) -> Settings:
    """Settings for an HTTP server: the env token may stand in for a missing bearer only when local-only."""
    return dataclasses.replace(settings, http_token_fallback=local_only(options))


def build_http_app(
    settings: Settings, options: HttpOptions, *, metrics: PrometheusRecorder | None = None, **server_kwargs: Any
) -> Starlette:
    """The ASGI app: MCP on `/mcp` (both protocol eras) behind the gateway, `/healthz` and `/readyz`.

    Its lifespan runs the MCP server's. `app.state.sessions` is the gateway's session registry,
    `app.state.session_manager` the SDK's, `app.state.readiness` what `/readyz` reports (and the drain). With
    `metrics` (made here when `options.metrics_port` is set), `app.state.metrics` records while the app runs;
    `serve_http` serves it on the metrics port.
    """
    metrics = _recorder(options, metrics, server_kwargs)
    security = transport_security(options)
    limits = SessionLimits(
        per_token=options.max_sessions_per_token,
        total=options.max_sessions,
        idle_seconds=options.session_idle_minutes * 60,
        unverified_per_client=options.max_unverified_sessions_per_client,
        unverified_total=options.max_unverified_sessions,
    )
    served = http_settings(settings, options)
    sessions = SessionRegistry(limits)
    told = server_kwargs.pop("on_state", None)

    def on_state(state: AppState) -> None:
        sessions.verified = state.pool.gate.verified_fingerprint  # who upstream accepted: the gateway's strangers
        if told is not None:
            told(state)

    server_kwargs["on_state"] = on_state
    readiness = server_kwargs.pop("readiness", None) or Readiness(check_timeout=options.readiness_timeout_seconds)
    front_door = None
    if options.oauth is not None:
        from mogplex_mcp.server.transport.oauth import build_front_door, with_front_door

        front_door = build_front_door(settings, options.oauth)
        served, server_kwargs = with_front_door(front_door, served, server_kwargs)
    server = create_server(served, readiness=readiness, stateless=options.stateless, **server_kwargs)

    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=options.stateless,
        transport_security=security,
        host=options.host,
        session_idle_timeout=limits.idle_seconds,
        # The gateway admits sessions (and evicts idle ones to make room); the SDK's cap is only a backstop.
        max_sessions=limits.total + limits.per_token,
        max_request_body_size=options.max_body_bytes,
    )
    _add_probes(app, readiness, stateless=options.stateless)
    if front_door is not None:
        front_door.install(app, server)
    policy = GatewayPolicy(
        path=MCP_PATH,
        require_bearer=not served.http_token_fallback,
        fallback_token=served.token if served.http_token_fallback else None,
        stateful=not options.stateless,
    )
    bodies = BodyBudget(
        BodyLimits(options.max_body_bytes, options.max_body_bytes_per_client, options.max_body_bytes_in_flight)
    )
    strangers = StrangerRequests(
        StrangerLimits(options.max_unverified_requests_per_client, options.max_unverified_requests)
    )
    app.add_middleware(ProtocolChecks, path=MCP_PATH, stateless=options.stateless)  # inside the gateway
    app.add_middleware(
        Gateway, policy=policy, sessions=sessions, bodies=bodies, strangers=strangers, front_door=front_door
    )
    app.state.sessions = sessions
    app.state.bodies = bodies
    app.state.strangers = strangers
    app.state.session_manager = server.session_manager
    app.state.readiness = readiness
    app.state.metrics = metrics
    if metrics is not None:
        from mogplex_mcp.server.transport.metrics import instrument_app

        instrument_app(app, metrics, sessions)
    return app


def _add_probes(app: Starlette, readiness: Readiness, *, stateless: bool) -> None:
    """`/healthz` (the process answers) and `/readyz` (it can serve: journal, Redis, not draining)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "server": "mogplex-mcp", "version": __version__, "stateless": stateless})

    async def readyz(_: Request) -> Response:
        # Reasons name the journal's path problem or Redis's masked URL, never a token: safe to show anyone.
        problems = await readiness.problems()
        body: dict[str, object] = {"status": "not ready" if problems else "ready", "server": "mogplex-mcp"}
        body["checks"] = {name: problems.get(name, "ok") for name in readiness.check_names} | problems
        return JSONResponse(body, status_code=503 if problems else 200)

    app.add_route(HEALTH_PATH, healthz, methods=["GET"], include_in_schema=False)
    app.add_route(READY_PATH, readyz, methods=["GET"], include_in_schema=False)


def _recorder(
    options: HttpOptions, metrics: PrometheusRecorder | None, server_kwargs: dict[str, Any]
) -> PrometheusRecorder | None:
    """The metrics recorder (made when `options.metrics_port` is set), watching each lifespan's state."""
    if metrics is None and options.metrics_port is not None:
        from mogplex_mcp.telemetry.metrics import PrometheusRecorder

        metrics = PrometheusRecorder()
    if metrics is not None:
        from mogplex_mcp.server.transport.metrics import watching_state

        server_kwargs["on_state"] = watching_state(metrics, server_kwargs.get("on_state"))
    return metrics


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
