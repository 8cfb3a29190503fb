"""Serving an Emulator over real HTTP on loopback: inside the caller's event loop, or in a background thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from mogplex_mcp.emulator.app import Emulator
from mogplex_mcp.emulator.config import DEMO_TOKEN, READ_ONLY_TOKEN, EmulatorConfig
from mogplex_mcp.emulator.faults import ConnectionDropped

STARTUP_TIMEOUT = 10.0
# uvicorn closes the socket without answering when an ASGI app returns a value instead of None: the only
# way an ASGI app can drop a connection. The adapter below does it and this filter hides uvicorn's complaint.
_DROP_SENTINEL = "emulator-dropped-connection"


@dataclass(frozen=True)
class EmulatorHandle:
    """A running emulator: where it is, the tokens that open it, and the Emulator to steer it."""

    base_url: str
    token: str
    read_only_token: str
    emulator: Emulator


class DropConnections:
    """Turns the app's ConnectionDropped into a closed socket with no HTTP answer under uvicorn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        try:
            await self.app(scope, receive, send)
        except ConnectionDropped:
            return _DROP_SENTINEL
        return None


class _HideDropComplaint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _DROP_SENTINEL not in record.getMessage()


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host program and says when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.on_started: Callable[[], None] = lambda: None

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (0 = a free port), bound before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP (else +40 ms/answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(emulator: Emulator) -> QuietServer:
    """A uvicorn server for `emulator`: h11, no lifespan, no access log, quick graceful shutdown."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _HideDropComplaint) for existing in uvicorn_log.filters):
        uvicorn_log.addFilter(_HideDropComplaint())
    config = uvicorn.Config(
        DropConnections(emulator.asgi_app()),
        http="h11",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    return QuietServer(config)


def _handle(emulator: Emulator, sock: socket.socket) -> EmulatorHandle:
    return EmulatorHandle(base_url_of(sock), DEMO_TOKEN, READ_ONLY_TOKEN, emulator)


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[EmulatorHandle]:
    """A real uvicorn server for a new Emulator on a free loopback port, inside the caller's event loop."""
    emulator = Emulator(config, clock=clock)
    sock = bind_loopback(host, port)
    server = make_server(emulator)
    started = anyio.Event()
    server.on_started = started.set
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            try:
                with anyio.fail_after(STARTUP_TIMEOUT):
                    await started.wait()
                yield _handle(emulator, sock)
            finally:
                emulator.closing.set()  # ends open event streams and hung requests
                server.should_exit = True
    finally:
        emulator.closing.clear()
        sock.close()


class EmulatorThread:
    """The same as running_emulator, with uvicorn in a background thread, for synchronous code."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.emulator = Emulator(config, clock=clock)
        self._host, self._port = host, port
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> EmulatorHandle:
        self._sock = bind_loopback(self._host, self._port)
        server = self._server = make_server(self.emulator)
        started = threading.Event()
        server.on_started = started.set
        sock = self._sock
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve([sock])), name="mogplex-emulator", daemon=True
        )
        self._thread.start()
        if not started.wait(STARTUP_TIMEOUT):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator server did not start within {STARTUP_TIMEOUT:g} s")
        return _handle(self.emulator, sock)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.emulator.closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STARTUP_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
        self.emulator.closing.clear()
        self._server = self._thread = self._sock = None
