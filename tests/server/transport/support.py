"""The shared gateway under attack: a server configured for a public bind, served on loopback, and raw requests."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app
from mogplex_mcp.server.transport.serving import running_http
from mogplex_mcp.server.transport.sessions import SessionRegistry
from tests.e2e.support import Mode, emulator_config
from tests.server.harness import FAST_FOLLOW, settings_for
from tests.server.resources.test_run_resources import Inbox

# Configured as a public bind (so no MOGPLEX_TOKEN fallback, bearer required), served on 127.0.0.1.
PUBLIC = HttpOptions(host="0.0.0.0", allowed_hosts=("127.0.0.1",))  # noqa: S104 - configured, never bound
LOCAL = HttpOptions()
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "attacker", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@dataclass
class Served:
    """The HTTP server in front of an emulator, and what the tests look at behind it."""

    url: str
    emu: EmulatorHandle
    app: Starlette
    states: list[AppState] = field(default_factory=list)

    @property
    def sessions(self) -> SessionRegistry:
        registry: SessionRegistry = self.app.state.sessions
        return registry

    def sdk_sessions(self) -> int:
        """Sessions the SDK's manager holds: the ground truth for 'no session was created'."""
        manager: StreamableHTTPSessionManager = self.app.state.session_manager
        return len(manager._server_instances)  # no public count; reading it changes nothing

    def follower(self, token: str, run_id: str) -> RunFollower | None:
        return self.states[-1].hub.get(token, run_id)


@asynccontextmanager
async def served(
    tmp_path: Path, options: HttpOptions = PUBLIC, *, emulator: EmulatorConfig | None = None, **settings: Any
) -> AsyncIterator[Served]:
    async with running_emulator(emulator or emulator_config()) as emu:
        states: list[AppState] = []
        app = build_http_app(
            settings_for(emu, tmp_path / "state", token=None, **settings),
            options,
            follow=FAST_FOLLOW,
            on_state=states.append,
        )
        async with running_http(app, options=options) as url:
            yield Served(url, emu, app, states)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def open_session(http: httpx2.AsyncClient, url: str, token: str | None) -> str:
    """A raw handshake: initialize plus notifications/initialized; the session id."""
    opened = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(token)})
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["mcp-session-id"]
    done = await http.post(
        url, json=INITIALIZED, headers={**MCP_HEADERS, **bearer(token), "Mcp-Session-Id": session_id}
    )
    assert done.status_code == 202, done.text
    return session_id


async def call(http: httpx2.AsyncClient, url: str, token: str | None, session_id: str, method: str) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {}}
    headers = {**MCP_HEADERS, **bearer(token), "Mcp-Session-Id": session_id}
    return await http.post(url, json=body, headers=headers)


def rpc_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message in a JSON or single-event SSE response."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    message: dict[str, Any] = json.loads(text)
    return message


@asynccontextmanager
async def client(
    url: str, mode: Mode, token: str | None, inbox: Inbox | None = None, session_ids: list[str] | None = None
) -> AsyncIterator[Client]:
    """A real MCP client with its own bearer; records the session ids the server hands it."""

    async def remember(response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_ids is not None and session_id and session_id not in session_ids:
            session_ids.append(session_id)

    async with (
        httpx2.AsyncClient(
            headers=bearer(token), timeout=httpx2.Timeout(30.0, read=90.0), event_hooks={"response": [remember]}
        ) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, message_handler=inbox) as connected,
    ):
        yield connected


async def subscribe_legacy(connected: Client, uri: str) -> None:
    """`resources/subscribe`, the handshake era's way (the SDK warns that the modern era dropped it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await connected.subscribe_resource(uri)
