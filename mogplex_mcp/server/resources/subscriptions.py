"""Live run resources: subscriptions in both protocol eras, held as follower watches, and change fan-out.

Handshake era (≤ 2025-11-25): `resources/subscribe`/`unsubscribe` are registered on the lowlevel server
(MCPServer has no public hook for them); each subscription holds a watch on the run's follower until
it is unsubscribed or its connection closes, and updates go out as `notifications/resources/updated`
on that connection. Modern era (2026-07-28): a `subscriptions/listen` stream holds watches on the runs
its filter names for as long as the stream is open; updates travel over the SDK's subscription bus.

Changes are coalesced: a follower marks its run's URIs dirty and one flush task per server lifespan
sends them, so a burst of 300 replayed events costs each subscriber a handful of notifications, and a
slow or vanished client never stalls a follower.

Every change belongs to one token: followers are keyed by (token fingerprint, run), and a notification
(`resources/updated`, `resources/list_changed`) goes only to the connections and listen streams of the token
it concerns: each fingerprint has its own bus, and a handshake-era connection remembers its caller's
fingerprint. A subscription is accepted only for a run the caller's token can read: the follower's first
look at the run asks upstream once; a positive answer is then remembered by fingerprint.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, SubscriptionFilter
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mogplex_mcp.api.errors import NotFoundError
from mogplex_mcp.api.models import RunEvent, is_uuid
from mogplex_mcp.runs.fingerprints import token_fingerprint
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
# Open `subscriptions/listen` streams in all (the SDK's own default cap).
MAX_LISTEN_STREAMS = 1024
# (fingerprint, run) pairs known readable, kept so a re-subscription does not wait for upstream again.
READABLE_KEPT = 10_000


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
    """One handshake-era connection: whose it is, where to send, and the watches its subscriptions hold."""

    session: ServerSession
    fingerprint: str | None
    subscriptions: dict[str, AsyncExitStack] = field(default_factory=dict)


class RunNotifier:
    """Per-lifespan subscription state and the flush task that tells subscribers about changes."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._clients: dict[int, _LegacyClient] = {}
        self._dirty: set[tuple[str, str]] = set()  # (fingerprint, uri)
        self._list_changed: set[str] = set()  # fingerprints
        self._buses: dict[str, InMemorySubscriptionBus] = {}
        self._listening: Counter[str] = Counter()
        self._readable: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._wake = anyio.Event()
        self.listen_watches = 0
        state.hub.add_listener(self.on_follow)
        state.on_new_run.append(self.on_new_run)

    # --- what changed ------------------------------------------------------------------------------

    async def on_follow(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        self._dirty.update((follower.fingerprint, uri) for uri in run_uris(follower.run_id))
        self._wake.set()
        if status_changed and follower.run is not None:
            remember = self.state.known_runs.remember_run
            if await remember(follower.fingerprint, follower.run_id, status=follower.run.status):
                await self.on_new_run(follower.fingerprint, follower.run_id)

    async def on_new_run(self, fingerprint: str, run_id: str) -> None:
        """A run new to this token's resources/list: only that token's subscribers hear of it."""
        self._list_changed.add(fingerprint)
        self._wake.set()

    # --- fan-out -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush changes until the lifespan ends; then release every watch still held."""
        try:
            await self.flush_forever()
        finally:
            await self.release_all()

    async def flush_forever(self) -> None:
        """Tell subscribers of each change as it comes (the part a supervisor restarts after a crash)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self._flush()

    async def release_all(self) -> None:
        """Release every watch still held (the lifespan is ending)."""
        with anyio.CancelScope(shield=True):
            for key in list(self._clients):
                await self._forget(key)

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        list_changed, self._list_changed = self._list_changed, set()
        for fingerprint in sorted(list_changed):
            if (bus := self._buses.get(fingerprint)) is not None:
                await bus.publish(ResourcesListChanged())
        for fingerprint, uri in sorted(dirty):
            if (bus := self._buses.get(fingerprint)) is not None:
                await bus.publish(ResourceUpdated(uri=uri))
        for key, client in list(self._clients.items()):
            if client.fingerprint is None:
                continue
            wanted = sorted(uri for fp, uri in dirty if fp == client.fingerprint and uri in client.subscriptions)
            tell_list = client.fingerprint in list_changed
            if wanted or tell_list:
                await self._send(key, client, wanted, tell_list)

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

    def track(self, session: ServerSession, fingerprint: str | None) -> None:
        """Remember a handshake-era connection and its caller (for list-changed notices); forget it at close."""
        connection = _connection_of(session)
        key = id(connection) if connection is not None else id(session)
        client = self._clients.get(key)
        if client is not None:
            client.session = session
            client.fingerprint = fingerprint or client.fingerprint
            return
        self._clients[key] = _LegacyClient(session, fingerprint)
        if connection is not None:
            connection.exit_stack.push_async_callback(self._forget, key)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        """Hold a watch on the run behind `uri` for this connection; refuse unknown and foreign runs."""
        run_id = _checked_run_id(uri)
        token = token_from_request(request_headers(ctx), self.state.settings)
        if not token:
            raise MCPError(INVALID_PARAMS, str(missing_token_error()))
        self.track(ctx.session, token_fingerprint(token))
        client = self._clients[_key_of(ctx.session)]
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
            yield self._buses.setdefault(fingerprint, InMemorySubscriptionBus())

    def _listen_released(self) -> None:
        self.listen_watches -= 1

    def _stop_listening(self, fingerprint: str) -> None:
        self._listening[fingerprint] -= 1
        if self._listening[fingerprint] <= 0:
            del self._listening[fingerprint]
            self._buses.pop(fingerprint, None)


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


class ResourceMiddleware:
    """Tracks handshake-era connections (for list-changed notices) and advertises `listChanged` to them."""

    def __init__(self, notifiers: dict[int, RunNotifier], *, stateless: bool = False) -> None:
        self._notifiers = notifiers
        self._stateless = stateless

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            return _advertise_list_changed(await call_next(ctx), delivered=not self._stateless)
        notifier = self._notifiers.get(id(ctx.lifespan_context))
        if notifier is not None and ctx.request_id is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            token = token_from_request(request_headers(ctx), notifier.state.settings)
            notifier.track(ctx.session, token_fingerprint(token) if token else None)
        return await call_next(ctx)


def _advertise_list_changed(result: HandlerResult, *, delivered: bool) -> HandlerResult:
    # The SDK never advertises resources.listChanged to handshake clients; this server does send it — except
    # when stateless, where no connection outlives a request: then neither it nor subscribe is advertised.
    if isinstance(result, dict):
        resources = result.get("capabilities", {}).get("resources")
        if isinstance(resources, dict):
            resources["listChanged"] = delivered
            if not delivered:
                resources["subscribe"] = False
    return result
