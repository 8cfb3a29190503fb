"""The server under test as a real child process: `python -m mogplex_mcp serve` over stdio or streamable HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from bench.emulator_proc import EmulatorProcess
from bench.measure import children_of, find_child

SERVE = [sys.executable, "-m", "mogplex_mcp", "serve"]
BARE = [sys.executable, "-m", "bench.bare_server"]
WIDE_BUDGET = [sys.executable, "-m", "bench.wide_budget_server"]
READY_TIMEOUT_S = 30.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def server_env(emulator: EmulatorProcess, state_dir: Path) -> dict[str, str]:
    """A host-like environment pointed at the emulator: token, base URL, a private state dir."""
    env = {key: os.environ[key] for key in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER") if key in os.environ}
    env.update(
        MOGPLEX_TOKEN=emulator.token,
        MOGPLEX_BASE_URL=emulator.base_url,
        MOGPLEX_MCP_STATE_DIR=str(state_dir),
        MOGPLEX_LOG_LEVEL="error",  # no "listening on" lines in the benchmark's output
        PYTHONPATH=str(PROJECT_ROOT),
    )
    return env


@dataclass(frozen=True)
class StdioServer:
    client: Client
    pid: int


@asynccontextmanager
async def stdio_server(
    env: dict[str, str], *, mode: str = "legacy", command: list[str] = SERVE
) -> AsyncIterator[StdioServer]:
    """A connected client of a server spawned over stdio (ours unless `command` says otherwise), and its pid."""
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(PROJECT_ROOT))
    earlier = set(children_of(os.getpid()))
    async with Client(params, mode=mode, read_timeout_seconds=120) as client:
        yield StdioServer(client, find_child(command[2], besides=earlier))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class HttpServer:
    url: str
    pid: int


@contextmanager
def http_server(
    env: dict[str, str], *, bare: bool = False, args: tuple[str, ...] = (), port: int | None = None
) -> Iterator[HttpServer]:
    """`serve --transport http [args]` (or the bare server) on `port` (default: a free loopback port), accepting
    connections when yielded."""
    port = port or free_port()
    command = [*BARE, "--http", str(port)] if bare else [*SERVE, "--transport", "http", "--port", str(port), *args]
    process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(port: int, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the HTTP server exited with {process.returncode} before it was ready")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {READY_TIMEOUT_S:g} s")


async def settle(seconds: float) -> None:
    """Let start-up work finish before a measurement window opens."""
    await anyio.sleep(seconds)
