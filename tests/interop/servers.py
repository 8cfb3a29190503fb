"""The real server as hosts run it: `python -m mogplex_mcp serve` as a child process, over stdio or HTTP."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "mogplex_mcp", "serve"]
STARTUP_LIMIT = 30.0
_LISTENING = re.compile(r"listening on (http://\S+)")


def server_env(base_url: str, token: str, home: Path, *, log_level: str = "debug") -> dict[str, str]:
    """What a host passes the child: a minimal environment plus the token and the upstream's URL."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "MOGPLEX_TOKEN": token,
        "MOGPLEX_BASE_URL": base_url,
        "MOGPLEX_MCP_STATE_DIR": str(home / "state"),
        "MOGPLEX_LOG_LEVEL": log_level,
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Output:
    """Everything a child process wrote."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")


async def _drain(stream: Any, into: bytearray) -> None:
    async for chunk in stream:
        into.extend(chunk)


@dataclass
class HttpServer:
    url: str
    process: Process
    output: Output


@asynccontextmanager
async def http_server(env: dict[str, str], *extra: str) -> AsyncIterator[HttpServer]:
    """`serve --transport http` on a free loopback port; yields once it says where it listens."""
    output = Output()
    command = [*SERVE, "--transport", "http", "--port", "0", *extra]
    async with await anyio.open_process(command, env=env, cwd=REPO_ROOT) as process, anyio.create_task_group() as tg:
        assert process.stdout is not None and process.stderr is not None
        tg.start_soon(_drain, process.stdout, output.stdout)
        stderr = BufferedByteReceiveStream(process.stderr)
        with anyio.fail_after(STARTUP_LIMIT):
            while not (found := _LISTENING.search(output.stderr.decode("utf-8", "replace"))):
                output.stderr.extend(await stderr.receive())
        tg.start_soon(_drain, stderr, output.stderr)
        try:
            yield HttpServer(found.group(1), process, output)
        finally:
            if process.returncode is None:  # a test may have killed it already
                process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            tg.cancel_scope.cancel()


class RawStdio:
    """Line-delimited JSON-RPC by hand, so every byte the server writes to stdout is seen."""

    def __init__(self, process: Process, output: Output) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.output = output
        self.messages: list[dict[str, Any]] = []
        self._next_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request; return its response (notifications before it are kept in `messages`)."""
        self._next_id += 1
        await self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}})
        while True:
            line = await self._stdout.receive_until(b"\n", 50_000_000)
            self.output.stdout.extend(line + b"\n")
            message: dict[str, Any] = json.loads(line)
            self.messages.append(message)
            if message.get("id") == self._next_id and ("result" in message or "error" in message):
                return message

    async def close(self) -> None:
        await self._stdin.aclose()
        async for chunk in self._stdout:  # whatever it writes on the way out counts too
            self.output.stdout.extend(chunk)


@asynccontextmanager
async def raw_stdio_server(env: dict[str, str]) -> AsyncIterator[RawStdio]:
    """`serve` over stdio, initialized in the handshake era (what hosts and the TS SDK speak)."""
    output = Output()
    async with await anyio.open_process(SERVE, env=env, cwd=REPO_ROOT) as process, anyio.create_task_group() as tg:
        assert process.stderr is not None
        tg.start_soon(_drain, process.stderr, output.stderr)
        client = RawStdio(process, output)
        with anyio.fail_after(STARTUP_LIMIT):
            init = await client.request(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-stdio-test", "version": "0"},
                },
            )
        assert "result" in init, init
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield client
        with anyio.fail_after(15):
            await client.close()
            await process.wait()
        tg.cancel_scope.cancel()
