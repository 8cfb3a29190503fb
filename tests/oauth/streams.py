"""Notification streams held open by an OAuth-signed-in client, watched from the client's side.

`GetStream` is a handshake-era session's `GET /mcp` stream read with plain HTTP (what every SDK client opens
after `initialize`); `Listening` is a 2026-era `subscriptions/listen` stream of the SDK's own client. Both say
what arrived, and whether and when the stream ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp import Client

from tests.server.transport.support import INITIALIZE, INITIALIZED, MCP_HEADERS

WAIT = 20.0


class Watched:
    """What one stream delivered, and when it ended (None: still open)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.ended_at: float | None = None
        self._changed = anyio.Event()

    def arrived(self, message: Any) -> None:
        self.messages.append(message)
        self._poke()

    def ended(self) -> None:
        self.ended_at = time.monotonic()
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, what: str, condition: Any, limit: float = WAIT) -> None:
        with anyio.move_on_after(limit):
            while not condition():
                await self._changed.wait()
        assert condition(), f"{what}: not within {limit} s (got {len(self.messages)} messages, ended={self.ended_at})"

    def updates(self) -> int:
        return sum(1 for m in self.messages if "updated" in json.dumps(m, default=str).lower())


async def raw_session(http: httpx2.AsyncClient, url: str, access_token: str) -> str:
    """initialize + initialized with the access token as bearer; the session id."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {access_token}"}
    opened = await http.post(url, json=INITIALIZE, headers=headers)
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["mcp-session-id"]
    done = await http.post(url, json=INITIALIZED, headers={**headers, "Mcp-Session-Id": session_id})
    assert done.status_code == 202, done.text
    return session_id


async def raw_subscribe(http: httpx2.AsyncClient, url: str, access_token: str, session_id: str, uri: str) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": uri}}
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {access_token}", "Mcp-Session-Id": session_id}
    answered = await http.post(url, json=body, headers=headers)
    assert answered.status_code == 200 and '"error"' not in answered.text, answered.text


@asynccontextmanager
async def get_stream(http: httpx2.AsyncClient, url: str, access_token: str, session_id: str) -> AsyncIterator[Watched]:
    """The session's GET stream (open when the block starts), read in the background until it ends."""
    watched = Watched()
    opened = anyio.Event()
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {access_token}", "Mcp-Session-Id": session_id}

    async def read() -> None:
        async with http.stream("GET", url, headers=headers, timeout=httpx2.Timeout(10.0, read=None)) as response:
            assert response.status_code == 200, await response.aread()
            opened.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    watched.arrived(json.loads(line[5:]))
        watched.ended()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        with anyio.fail_after(WAIT):
            await opened.wait()
        yield watched
        tg.cancel_scope.cancel()


@asynccontextmanager
async def listening(client: Client, uri: str) -> AsyncIterator[Watched]:
    """A `subscriptions/listen` stream for `uri`, read in the background until it ends (or the block does)."""
    watched = Watched()

    async def read() -> None:
        async with client.listen(resource_subscriptions=[uri]) as stream:
            async for event in stream:
                watched.arrived(event)
        watched.ended()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        yield watched
        tg.cancel_scope.cancel()
