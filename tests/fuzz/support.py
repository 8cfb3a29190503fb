"""Fuzzing support: one live server for a whole hypothesis run, called from synchronous test bodies.

Hypothesis drives synchronous functions; the server, its client and the upstream live in an event loop
on a blocking portal, started once per test rather than once per example (thousands of examples).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.types import CallToolResult

from mogplex_mcp.config import Settings
from mogplex_mcp.server.app import create_server
from tests.server.harness import FAST_FOLLOW, Session, text_of

# What a crash looks like to the model: the SDK's generic text, with nothing after the tool's name.
CRASH_PREFIX = "Error executing tool "


@dataclass
class LiveSession:
    """A connected client reachable from synchronous code."""

    portal: BlockingPortal
    client: Client

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        result: CallToolResult = self.portal.call(self.client.call_tool, tool, arguments)
        return result


@contextmanager
def live_session(session_cm: AbstractAsyncContextManager[Session]) -> Iterator[tuple[LiveSession, Session]]:
    """The harness's session (server + emulator), on a portal."""
    with start_blocking_portal(backend="asyncio") as portal, portal.wrap_async_context_manager(session_cm) as session:
        yield LiveSession(portal, session.client), session


@contextmanager
def live_server(settings: Settings, transport: httpx2.AsyncBaseTransport) -> Iterator[LiveSession]:
    """Our server on an upstream transport seam (no emulator), with a legacy-era client, on a portal."""

    @asynccontextmanager
    async def connected() -> AsyncIterator[Client]:
        async with Client(create_server(settings, transport=transport, follow=FAST_FOLLOW), mode="legacy") as client:
            yield client

    with start_blocking_portal(backend="asyncio") as portal, portal.wrap_async_context_manager(connected()) as client:
        yield LiveSession(portal, client)


def assert_clear_error(tool: str, result: CallToolResult, *, names: str | None = None) -> str:
    """An isError result a model can act on: no crash, no traceback, short, naming `names` if given."""
    text = text_of(result)
    assert result.is_error, f"{tool}: expected an error, got {json.dumps(result.structured_content)[:300]}"
    assert_no_crash(tool, text)
    assert len(text) < 2_000, f"{tool}: error text of {len(text)} chars"
    if names is not None:
        assert names in text, f"{tool}: the error does not name {names!r}: {text[:300]}"
    return text


def assert_no_crash(tool: str, text: str) -> None:
    assert text.strip() != f"{CRASH_PREFIX}{tool}", f"{tool} crashed (an unexpected exception reached the SDK)"
    assert "Traceback" not in text and 'File "' not in text, f"{tool}: traceback text reached the model: {text}"
