"""The Emulator: its state, its programmatic controls, and the ASGI front that logs requests and injects faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mogplex_mcp.emulator.config import EmulatorConfig, scaled_monotonic
from mogplex_mcp.emulator.control import CONTROL, ControlApi, from_loopback
from mogplex_mcp.emulator.faults import ConnectionDropped, Fault, FaultInjector, fault_response
from mogplex_mcp.emulator.limits import RateLimits
from mogplex_mcp.emulator.responses import error
from mogplex_mcp.emulator.routes import RunsApi
from mogplex_mcp.emulator.store import RunStore, iso_clock
from mogplex_mcp.emulator.stream import stream_routes
from mogplex_mcp.emulator.traffic import RequestLog, RequestRecord, token_tag

HANG_POLL_SECONDS = 0.1


class Emulator:
    """A local Mogplex v1 API: state, controls, and `asgi_app()` to serve it in-process or over HTTP."""

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.clock: Callable[[], float] = clock if clock is not None else scaled_monotonic(self.config.speed)
        self.iso = iso_clock(time.time(), self.clock(), self.config.speed if clock is None else 1.0)
        self.store = RunStore(self.config, self.iso)
        self.limits = RateLimits(self.config.rate_limit_per_minute, self.config.start_limits)
        self.faults = FaultInjector()
        self.log = RequestLog()
        self.requests: list[RequestRecord] = self.log.records
        self.closing = threading.Event()  # set while a server shuts down: ends streams and hangs
        self._app: ASGIApp | None = None

    def asgi_app(self) -> ASGIApp:
        """The ASGI app (built once): the API behind the request log and the fault injector."""
        if self._app is None:
            api = RunsApi(self)
            routes = [*api.routes(), *ControlApi(self).routes()]
            if self.config.flavor == "observed":
                routes += stream_routes(api)
            inner = Starlette(routes=routes, exception_handlers={404: _not_found})
            self._app = EmulatorFront(self, inner)
        return self._app

    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """API requests received (control endpoints excluded), optionally by method and path prefix."""
        return self.log.count(method, path_prefix)

    def inject_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
        retry_after: int | None = None,
        size: int | None = None,
    ) -> None:
        """Arm a fault for the next `count` API requests matching method/path (path: exact or prefix)."""
        self.faults.add(kind, count=count, method=method, path=path, delay=delay, retry_after=retry_after, size=size)

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Forget runs, keys, limits, faults and the request log (config and clock stay)."""
        self.store.reset()
        self.limits.reset()
        self.faults.clear()
        self.log.clear()

    def run_ids(self) -> list[str]:
        """Ids of the runs created (and still kept), oldest first."""
        return self.store.run_ids()


async def _not_found(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code != 404:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return error("NOT_FOUND", "Not found")


class EmulatorFront:
    """Before the API: control endpoints (loopback only), the request log, the `www.` redirect, faults."""

    def __init__(self, emulator: Emulator, app: ASGIApp) -> None:
        self.emu = emulator
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == CONTROL or scope["path"].startswith(CONTROL + "/"):
            await self._control(scope, receive, send)
            return
        record = _record(scope)
        self.emu.log.add(record)
        with self.emu.log.in_flight(record.token_tag):
            await self._serve(scope, receive, _recording(send, record), record)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        if self.emu.config.flavor == "observed" and _host(scope).startswith("www."):
            await _apex_redirect(scope)(scope, receive, send)
            return
        fault = self.emu.faults.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        record.fault = fault.kind
        await self._apply(fault, scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not from_loopback(scope):
            forbidden = JSONResponse({"ok": False, "error": {"code": "FORBIDDEN", "message": "loopback only"}}, 403)
            await forbidden(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _apply(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        canned = fault_response(fault)
        if canned is not None:
            await canned(scope, receive, send)
        elif fault.kind == "delay":
            await anyio.sleep(fault.delay)
            await self.app(scope, receive, send)
        elif fault.kind == "hang":
            await self._hang(receive)
        else:  # drop_after_commit: the request takes effect, its answer never leaves
            await self.app(scope, receive, _discard)
            raise ConnectionDropped("connection dropped by emulator fault")

    async def _hang(self, receive: Receive) -> None:
        """Answer nothing until the client disconnects (or the server shuts down)."""
        while not self.emu.closing.is_set():
            with anyio.move_on_after(HANG_POLL_SECONDS):
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
        raise ConnectionDropped("server shutting down with a hung request")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _host(scope: Scope) -> str:
    return (_header(scope, b"host") or "").lower()


def _record(scope: Scope) -> RequestRecord:
    authorization = _header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    has_auth = scheme.lower() == "bearer" and bool(token.strip())
    return RequestRecord(
        method=scope["method"],
        path=scope["path"],
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        has_auth=has_auth,
        idempotency_key=_header(scope, b"idempotency-key"),
        token_tag=token_tag(token.strip()) if has_auth else None,
        traceparent=_header(scope, b"traceparent"),
    )


def _recording(send: Send, record: RequestRecord) -> Send:
    async def recording_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = int(message["status"])
        elif message["type"] == "http.response.body":
            record.body_bytes += len(message.get("body", b""))
        await send(message)

    return recording_send


async def _discard(message: Message) -> None:
    return None


def _apex_redirect(scope: Scope) -> Response:
    """Production answers every request to www.<host> with a 308 to the apex, same path and query."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    target = f"{scope.get('scheme', 'http')}://{_host(scope)[4:]}{scope['path']}" + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=308)
