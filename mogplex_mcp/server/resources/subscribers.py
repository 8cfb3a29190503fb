"""Who listens to which run: handshake-era connections and their subscriptions, listen streams, readable runs.

The bookkeeping half of live resources (`subscriptions.py` delivers the changes). Handshake era
(≤ 2025-11-25): each `resources/subscribe` holds a watch on the run's follower until it is unsubscribed or
its connection closes; each connection remembers its caller's token fingerprint. Modern era (2026-07-28): a
`subscriptions/listen` stream holds watches on the runs its filter names while it is open, and reads the
subscription bus of its caller's token. A subscription is accepted only for a run the caller's token can
read: the follower's first look at the run asks upstream once; a positive answer is then remembered by
fingerprint.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, SubscriptionFilter

from mogplex_mcp.api.errors import NotFoundError
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.server.errors import missing_token_error, tool_error
from mogplex_mcp.server.resources.uris import run_id_in
from mogplex_mcp.server.state import AppState, token_from_request

# How long resources/subscribe waits for the follower's first look at the run (to refuse unknown runs).
SUBSCRIBE_CHECK_SECONDS = 10.0
MAX_SUBSCRIPTIONS_PER_CLIENT = 100
# Open `subscriptions/listen` streams in all (the SDK's own default cap).
MAX_LISTEN_STREAMS = 1024
# (fingerprint, run) pairs known readable, kept so a re-subscription does not wait for upstream again.
READABLE_KEPT = 10_000


def request_headers(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The HTTP headers of the request carrying this message (None on stdio and in-process)."""
    return getattr(ctx.request, "headers", None)


def _connection_of(session: ServerSession) -> Connection | None:
    # The SDK keeps the connection private on the per-request session; its `exit_stack` is the public
    # per-connection teardown hook. Without it, a dead client is noticed on the next failed send.
    connection = getattr(session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


@dataclass
class LegacyClient:
    """One handshake-era connection: whose it is, where to send, and the watches its subscriptions hold."""

    session: ServerSession
    fingerprint: str | None
    subscriptions: dict[str, AsyncExitStack] = field(default_factory=dict)


class Subscribers:
    """Per-lifespan subscription bookkeeping: connections, their subscriptions, listen streams, buses."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.clients: dict[int, LegacyClient] = {}
        self.buses: dict[str, InMemorySubscriptionBus] = {}  # per token fingerprint, while it has listen streams
        self._listening: Counter[str] = Counter()
        self._readable: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.listen_watches = 0

    # --- handshake era -------------------------------------------------------------------------------

    def track(self, session: ServerSession, fingerprint: str | None) -> None:
        """Remember a handshake-era connection and its caller (for list-changed notices); forget it at close."""
        connection = _connection_of(session)
        key = id(connection) if connection is not None else id(session)
        client = self.clients.get(key)
        if client is not None:
            client.session = session
            client.fingerprint = fingerprint or client.fingerprint
            return
        self.clients[key] = LegacyClient(session, fingerprint)
        if connection is not None:
            connection.exit_stack.push_async_callback(self.forget, key)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        """Hold a watch on the run behind `uri` for this connection; refuse unknown and foreign runs."""
        run_id = _checked_run_id(uri)
        token = token_from_request(request_headers(ctx), self.state.settings)
        if not token:
            raise MCPError(INVALID_PARAMS, str(missing_token_error()))
        self.track(ctx.session, token_fingerprint(token))
        client = self.clients[_key_of(ctx.session)]
        if uri in client.subscriptions:
            return
        if len(client.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CLIENT:
            raise MCPError(INVALID_PARAMS, f"Too many subscriptions (at most {MAX_SUBSCRIPTIONS_PER_CLIENT}).")
        stack = AsyncExitStack()
        follower = await stack.enter_async_context(self.state.hub.watch(token, run_id))
        client.subscriptions[uri] = stack
        try:
            await self._require_readable(token, follower, uri)
        except MCPError:
            await self.unsubscribe(ctx, uri)
            raise

    async def _require_readable(self, token: str, follower: RunFollower, uri: str) -> None:
        """Refuse (-32602) a run this token cannot read: upstream's answer to the follower's first look."""
        key = (follower.fingerprint, follower.run_id)
        if key in self._readable:
            self._readable.move_to_end(key)
            return
        with anyio.move_on_after(SUBSCRIBE_CHECK_SECONDS):
            await follower.ready.wait()
        if follower.fatal is not None:
            if isinstance(follower.fatal, NotFoundError):
                raise MCPError(INVALID_PARAMS, run_not_found(follower.run_id), data={"uri": uri})
            raise MCPError(INVALID_PARAMS, str(tool_error(follower.fatal, "follow the run", token=token)))
        if follower.run is not None:  # else upstream did not answer in time: its updates reach this token only
            self._readable[key] = None
            if len(self._readable) > READABLE_KEPT:
                self._readable.popitem(last=False)
            await self.state.remember(token, follower.run)

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        client = self.clients.get(_key_of(ctx.session))
        stack = client.subscriptions.pop(uri, None) if client is not None else None
        if stack is not None:
            await stack.aclose()

    async def forget(self, key: int) -> None:
        """Drop a connection and release every watch its subscriptions hold."""
        client = self.clients.pop(key, None)
        if client is None:
            return
        for stack in client.subscriptions.values():
            await stack.aclose()
        client.subscriptions.clear()

    @property
    def legacy_subscriptions(self) -> int:
        return sum(len(client.subscriptions) for client in self.clients.values())

    # --- modern era ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def holding(
        self, ctx: ServerRequestContext[Any, Any], wanted: SubscriptionFilter
    ) -> AsyncIterator[InMemorySubscriptionBus]:
        """For one listen stream: check and watch the runs it names; yield the bus of its caller's token.

        Refuses (-32602, before the stream is acknowledged) a stream without a token that asks for run
        changes, and any run its token cannot read.
        """
        uris = wanted.resource_subscriptions or []
        token = token_from_request(request_headers(ctx), self.state.settings)
        if not token and (uris or wanted.resources_list_changed):
            raise MCPError(INVALID_PARAMS, str(missing_token_error()))
        if sum(self._listening.values()) >= MAX_LISTEN_STREAMS:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached: too many open listen streams, retry later.")
        fingerprint = token_fingerprint(token) if token else ""
        async with AsyncExitStack() as stack:
            if token:
                for uri in uris:
                    if (run_id := run_id_in(uri)) is not None:
                        follower = await stack.enter_async_context(self.state.hub.watch(token, run_id))
                        self.listen_watches += 1
                        stack.callback(self._listen_released)
                        await self._require_readable(token, follower, uri)
            stack.callback(self._stop_listening, fingerprint)
            self._listening[fingerprint] += 1
            yield self.buses.setdefault(fingerprint, InMemorySubscriptionBus())

    def _listen_released(self) -> None:
        self.listen_watches -= 1

    def _stop_listening(self, fingerprint: str) -> None:
        self._listening[fingerprint] -= 1
        if self._listening[fingerprint] <= 0:
            del self._listening[fingerprint]
            self.buses.pop(fingerprint, None)


def _key_of(session: ServerSession) -> int:
    connection = _connection_of(session)
    return id(connection) if connection is not None else id(session)


def _checked_run_id(uri: str) -> str:
    run_id = run_id_in(uri)
    if run_id is None:
        shown = shorten(clean_text(uri), 120)
        raise MCPError(
            INVALID_PARAMS,
            f"Cannot subscribe to {shown!r}: subscribe to mogplex://runs/{{runId}} (or its /events or /log), "
            "with the runId (a UUID) that start_run returned.",
            data={"uri": uri},
        )
    return run_id


def run_not_found(run_id: str) -> str:
    return (
        f"Run {run_id} was not found: it does not exist or belongs to another account's token. "
        "Check the runId (start_run returns it; the list_runs tool and resources/list show the runs this server knows)."
    )
