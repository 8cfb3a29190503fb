"""Revocation that reaches connections already open: a revoked grant's sessions and streams end, everywhere.

Refusing new requests is not enough: a handshake-era session's `GET /mcp` stream and a 2026-era
`subscriptions/listen` stream, opened while the grant was good, would otherwise keep delivering notifications
until their client closed them. So every request the gateway authorises through an access token carries its
grant id (`GRANT_KEY` in the ASGI scope); sessions remember the grants that used them (the gateway's
`SessionRegistry`), and listen streams run inside a cancel scope registered under their grant (`EndListens`).

A grant ends here in two ways:

- **on this replica, at once**: the provider reports every grant it drops (`/revoke`, a refresh token replayed,
  Mogplex answering 401 for the PAT, a key no longer held) to `GrantWatch.ended`;
- **anywhere else** (another replica, `mogplex-mcp oauth grants revoke`, expiry): every `check_seconds` the
  watch asks the store which of the grants in use here are still live — one query for all of them — and ends
  the rest. Nothing is checked while no OAuth session or stream is open.

Ending a session goes through the SDK's own DELETE path (its transport closes, its GET stream ends, its id
answers 404); a listen stream is cancelled and answered with its final result, as a draining server does,
so the client knows the stream ended on purpose; its next request gets the OAuth challenge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import SubscriptionsListenResult

from mogplex_mcp.runs.grant_store import GrantStore
from mogplex_mcp.runs.store import StoreUnavailableError

logger = logging.getLogger("mogplex_mcp.oauth")

# The ASGI scope key the gateway sets on a request authorised by an OAuth access token: its grant's id.
GRANT_KEY = "mogplex_mcp.grant"
DEFAULT_CHECK_SECONDS = 5.0


class GrantSessions(Protocol):
    """What holds sessions opened under grants (the gateway): which grants it serves, and ending theirs."""

    def grants_in_use(self) -> set[str]: ...

    async def end_sessions_of(self, grant_ids: Collection[str]) -> int: ...


def grant_of(scope: Any) -> str | None:
    """The grant a request was authorised by (None: a PAT bearer, or no bearer)."""
    value = scope.get(GRANT_KEY) if isinstance(scope, dict) else None
    return value if isinstance(value, str) else None


class GrantWatch:
    """Open listen streams by grant, the session holders, and the periodic check (see the module docstring)."""

    def __init__(self, store: GrantStore, check_seconds: float = DEFAULT_CHECK_SECONDS) -> None:
        self.store = store
        self.check_seconds = check_seconds
        self._listens: dict[str, set[anyio.CancelScope]] = {}
        self._holders: list[GrantSessions] = []
        self._before_check: list[Callable[[], Awaitable[object]]] = []
        self._store_failing = False
        # For operators and tests: sessions and streams ended because their grant went.
        self.sessions_ended = 0
        self.streams_ended = 0

    def add_holder(self, holder: GrantSessions) -> None:
        self._holders.append(holder)

    def before_check(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run `step` at every check first (the provider drops grants of PATs Mogplex refused)."""
        self._before_check.append(step)

    @contextmanager
    def listening(self, grant_id: str) -> Iterator[anyio.CancelScope]:
        """A scope around one listen stream of `grant_id`, cancelled when the grant ends."""
        with anyio.CancelScope() as scope:
            self._listens.setdefault(grant_id, set()).add(scope)
            try:
                yield scope
            finally:
                streams = self._listens.get(grant_id)
                if streams is not None:
                    streams.discard(scope)
                    if not streams:
                        del self._listens[grant_id]

    def in_use(self) -> set[str]:
        used = set(self._listens)
        for holder in self._holders:
            used |= holder.grants_in_use()
        return used

    async def ended(self, grant_ids: Collection[str]) -> None:
        """These grants are gone: end their listen streams and sessions on this replica now."""
        for grant_id in grant_ids:
            for scope in self._listens.pop(grant_id, set()):
                scope.cancel()
                self.streams_ended += 1
        for holder in self._holders:
            try:
                self.sessions_ended += await holder.end_sessions_of(grant_ids)
            except Exception:  # the grant is dropped already; ending its sessions must not fail the revoker
                logger.exception("could not end the sessions of a revoked OAuth grant")

    async def check(self) -> None:
        """One round: grants in use here that the store no longer holds are ended."""
        for step in self._before_check:
            await step()
        used = self.in_use()
        if not used:
            return
        live = await self.store.live_grant_ids(used)
        if gone := used - live:
            logger.info("%d OAuth grant(s) revoked or expired elsewhere: ending their sessions here", len(gone))
            await self.ended(gone)

    async def run(self) -> None:
        """Check every `check_seconds` until cancelled; a failing store is logged once and retried."""
        while True:
            await anyio.sleep(self.check_seconds)
            try:
                await self.check()
            except StoreUnavailableError as exc:
                # Open streams stay open while the store cannot say (new requests get 503 meanwhile).
                if not self._store_failing:
                    logger.warning("could not check open sessions' OAuth grants: %s", exc)
                self._store_failing = True
                continue
            except Exception:  # a bug here must not stop later checks
                logger.exception("checking open sessions' OAuth grants failed")
                continue
            self._store_failing = False


class EndListens:
    """MCP middleware: a `subscriptions/listen` stream authorised by a grant ends when the grant does."""

    def __init__(self, watch: GrantWatch) -> None:
        self.watch = watch

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        grant_id = grant_of(getattr(ctx.request, "scope", None)) if ctx.method == "subscriptions/listen" else None
        if grant_id is None:
            return await call_next(ctx)
        with self.watch.listening(grant_id) as scope:
            return await call_next(ctx)
        # Reached only when the grant ended: the stream's final result, as a graceful close sends it.
        assert scope.cancelled_caught
        return SubscriptionsListenResult(_meta={SUBSCRIPTION_ID_META_KEY: ctx.request_id})
