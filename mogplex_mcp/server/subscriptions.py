"""Live run resources: subscriptions in both protocol eras, held as follower watches, and change fan-out.

Handshake era (≤ 2025-11-25): `resources/subscribe`/`unsubscribe` are registered on the lowlevel server
(MCPServer has no public hook for them); each subscription holds a watch on the run's follower until
it is unsubscribed or its connection closes, and updates go out as `notifications/resources/updated`
on that connection. Modern era (2026-07-28): a `subscriptions/listen` stream holds watches on the runs
its filter names for as long as the stream is open; updates travel over the SDK's subscription bus.

Changes are coalesced: a follower marks its run's URIs dirty and one flush task per server lifespan
sends them, so a burst of 300 replayed events costs each subscriber a handful of notifications, and a
slow or vanished client never stalls a follower.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mogplex_mcp.api.errors import NotFoundError
from mogplex_mcp.api.models import RunEvent, is_uuid
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.server.errors import missing_token_error, tool_error
from mogplex_mcp.server.state import AppState, token_from_request

logger = logging.getLogger("mogplex_mcp.server")

RUN_URI = "mogplex://runs/{runId}"
EVENTS_URI = "mogplex://runs/{runId}/events"
LOG_URI = "mogplex://runs/{runId}/log"
_RUN_URI = re.compile(r"^mogplex://runs/([^/?#]+)(?:/(?:events|log))?$")
# How long one notification to one handshake-era client may take before that client is dropped.
SEND_TIMEOUT_SECONDS = 5.0
# How long resources/subscribe waits for the follower's first look at the run (to refuse unknown runs).
SUBSCRIBE_CHECK_SECONDS = 10.0
MAX_SUBSCRIPTIONS_PER_CLIENT = 100


def run_uris(run_id: str) -> tuple[str, str, str]:
    """The three resources of one run: state, event log, transcript."""
    base = f"mogplex://runs/{run_id}"
    return base, f"{base}/events", f"{base}/log"


def run_id_in(uri: str) -> str | None:
    """The run a `mogplex://runs/...` URI names, if it is one of ours with a well-formed id."""
    match = _RUN_URI.match(uri)
    return match.group(1) if match and is_uuid(match.group(1)) else None


def request_headers(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The HTTP headers of the request carrying this message (None on stdio and in-process)."""
    return getattr(ctx.request, "headers", None)


def _connection_of(session: ServerSession) -> Connection | None:
    # The SDK keeps the connection private on the per-request session; its `exit_stack` is the public
    # per-connection teardown hook. Without it, a dead client is noticed on the next failed send.
    connection = getattr(session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


@dataclass
class _LegacyClient:
    """One handshake-era connection: where to send, and the watches its subscriptions hold."""

    session: ServerSession
    subscriptions: dict[str, AsyncExitStack] = field(default_factory=dict)


class RunNotifier:
    """Per-lifespan subscription state and the flush task that tells subscribers about changes."""

    def __init__(self, state: AppState, bus: SubscriptionBus) -> None:
        self.state = state
        self.bus = bus
        self._clients: dict[int, _LegacyClient] = {}
        self._dirty: set[str] = set()
        self._list_changed = False
        self._wake = anyio.Event()
        self.listen_watches = 0
        state.hub.add_listener(self.on_follow)
        state.on_new_run.append(self.on_new_run)

    # --- what changed ------------------------------------------------------------------------------

    async def on_follow(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        self._dirty.update(run_uris(follower.run_id))
        self._wake.set()
        if status_changed and follower.run is not None:
            remember = self.state.known_runs.remember_run
            if await remember(follower.fingerprint, follower.run_id, status=follower.run.status):
                await self.on_new_run(follower.run_id)

    async def on_new_run(self, run_id: str) -> None:
        self._list_changed = True
        self._wake.set()

    # --- fan-out -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush changes until the lifespan ends; then release every watch still held."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self._flush()
        finally:
            with anyio.CancelScope(shield=True):
                for key in list(self._clients):
                    await self._forget(key)

    async def _flush(self) -> None:
        uris, self._dirty = self._dirty, set()
        list_changed, self._list_changed = self._list_changed, False
        if list_changed:
            await self.bus.publish(ResourcesListChanged())
        for uri in sorted(uris):
            await self.bus.publish(ResourceUpdated(uri=uri))
        for key, client in list(self._clients.items()):
            wanted = sorted(uri for uri in uris if uri in client.subscriptions)
            if wanted or list_changed:
                await self._send(key, client, wanted, list_changed)

    async def _send(self, key: int, client: _LegacyClient, uris: list[str], list_changed: bool) -> None:
        sent = False
        try:
            with anyio.move_on_after(SEND_TIMEOUT_SECONDS):
                if list_changed:
                    await client.session.send_resource_list_changed()
                for uri in uris:
                    await client.session.send_resource_updated(uri)
                sent = True
        except Exception as exc:  # fan-out boundary: one broken client must not silence the others
            logger.info("dropping a subscriber whose connection failed: %s", type(exc).__name__)
        if not sent:
            await self._forget(key)

    # --- handshake era -------------------------------------------------------------------------------

    def track(self, session: ServerSession) -> None:
        """Remember a handshake-era connection (for list-changed notices); forget it when it closes."""
        connection = _connection_of(session)
        key = id(connection) if connection is not None else id(session)
        client = self._clients.get(key)
        if client is not None:
            client.session = session
            return
        self._clients[key] = _LegacyClient(session)
        if connection is not None:
            connection.exit_stack.push_async_callback(self._forget, key)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        """Hold a watch on the run behind `uri` for this connection; refuse unknown and foreign runs."""
        run_id = _checked_run_id(uri)
        token = token_from_request(request_headers(ctx), self.state.settings)
        if not token:
            raise MCPError(INVALID_PARAMS, str(missing_token_error()))
        self.track(ctx.session)
        client = self._clients[_key_of(ctx.session)]
        if uri in client.subscriptions:
            return
        if len(client.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CLIENT:
            raise MCPError(INVALID_PARAMS, f"Too many subscriptions (at most {MAX_SUBSCRIPTIONS_PER_CLIENT}).")
        stack = AsyncExitStack()
        follower = await stack.enter_async_context(self.state.hub.watch(token, run_id))
        client.subscriptions[uri] = stack
        with anyio.move_on_after(SUBSCRIBE_CHECK_SECONDS):
            await follower.ready.wait()
        if follower.fatal is not None:
            await self.unsubscribe(ctx, uri)
            if isinstance(follower.fatal, NotFoundError):
                raise MCPError(INVALID_PARAMS, run_not_found(run_id), data={"uri": uri})
            raise MCPError(INVALID_PARAMS, str(tool_error(follower.fatal, "follow the run", token=token)))
        if follower.run is not None:
            await self.state.remember(token, follower.run)

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        client = self._clients.get(_key_of(ctx.session))
        stack = client.subscriptions.pop(uri, None) if client is not None else None
        if stack is not None:
            await stack.aclose()

    async def _forget(self, key: int) -> None:
        client = self._clients.pop(key, None)
        if client is None:
            return
        for stack in client.subscriptions.values():
            await stack.aclose()
        client.subscriptions.clear()

    @property
    def legacy_subscriptions(self) -> int:
        return sum(len(client.subscriptions) for client in self._clients.values())

    # --- modern era ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def holding(self, ctx: ServerRequestContext[Any, Any], uris: Sequence[str]) -> AsyncIterator[None]:
        """Watch the runs a listen stream subscribed to, for as long as the stream is open."""
        token = token_from_request(request_headers(ctx), self.state.settings)
        run_ids = sorted({run_id for uri in uris if (run_id := run_id_in(uri)) is not None})
        async with AsyncExitStack() as stack:
            if token:
                for run_id in run_ids:
                    await stack.enter_async_context(self.state.hub.watch(token, run_id))
                    self.listen_watches += 1
                    stack.callback(self._listen_released)
            yield

    def _listen_released(self) -> None:
        self.listen_watches -= 1


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
        "Check the runId (start_run returns it; resources/list shows the runs this server knows)."
    )


class ResourceMiddleware:
    """Tracks handshake-era connections (for list-changed notices) and advertises `listChanged` to them."""

    def __init__(self, notifiers: dict[int, RunNotifier]) -> None:
        self._notifiers = notifiers

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            return _advertise_list_changed(await call_next(ctx))
        notifier = self._notifiers.get(id(ctx.lifespan_context))
        if notifier is not None and ctx.request_id is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            notifier.track(ctx.session)
        return await call_next(ctx)


def _advertise_list_changed(result: HandlerResult) -> HandlerResult:
    # The SDK never advertises resources.listChanged to handshake clients; this server does send it.
    if isinstance(result, dict):
        resources = result.get("capabilities", {}).get("resources")
        if isinstance(resources, dict):
            resources["listChanged"] = True
    return result
