"""Live run resources, delivery: what changed reaches each token's subscribers, coalesced, never stalling.

Changes are coalesced: a follower marks its run's URIs dirty and one flush task per server lifespan
sends them, so a burst of 300 replayed events costs each subscriber a handful of notifications, and a
slow or vanished client never stalls a follower. Handshake-era subscribers hear
`notifications/resources/updated` on their connection; listen streams (modern era) over the SDK's
subscription bus of their token.

Every change belongs to one token: followers are keyed by (token fingerprint, run), and a notification
(`resources/updated`, `resources/list_changed`) goes only to the connections and listen streams of the token
it concerns. Who listens to what is kept by `subscribers.py`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.server.resources.subscribers import LegacyClient, Subscribers, request_headers
from mogplex_mcp.server.resources.uris import run_uris
from mogplex_mcp.server.state import AppState, token_from_request

logger = logging.getLogger("mogplex_mcp.server")

# How long one notification to one handshake-era client may take before that client is dropped.
SEND_TIMEOUT_SECONDS = 5.0


class RunNotifier:
    """Per-lifespan change delivery: marks what changed, and the flush task that tells subscribers."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.subscribers = Subscribers(state)
        self._dirty: set[tuple[str, str]] = set()  # (fingerprint, uri)
        self._list_changed: set[str] = set()  # fingerprints
        self._wake = anyio.Event()
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
            for key in list(self.subscribers.clients):
                await self.subscribers.forget(key)

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        list_changed, self._list_changed = self._list_changed, set()
        for fingerprint in sorted(list_changed):
            if (bus := self.subscribers.buses.get(fingerprint)) is not None:
                await bus.publish(ResourcesListChanged())
        for fingerprint, uri in sorted(dirty):
            if (bus := self.subscribers.buses.get(fingerprint)) is not None:
                await bus.publish(ResourceUpdated(uri=uri))
        for key, client in list(self.subscribers.clients.items()):
            if client.fingerprint is None:
                continue
            wanted = sorted(uri for fp, uri in dirty if fp == client.fingerprint and uri in client.subscriptions)
            tell_list = client.fingerprint in list_changed
            if wanted or tell_list:
                await self._send(key, client, wanted, tell_list)

    async def _send(self, key: int, client: LegacyClient, uris: list[str], list_changed: bool) -> None:
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
            await self.subscribers.forget(key)


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
            notifier.subscribers.track(ctx.session, token_fingerprint(token) if token else None)
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
