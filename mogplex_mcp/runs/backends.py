"""Where the run-supervision state lives — this process (default) or Redis (`--redis-url`) — and its failures.

With Redis, start claims, the runs list and each token's request budget are shared by every replica, and
each run is followed upstream by one replica (its lease holder), the others reading its feed. Claims and the
runs list are mirrored to this replica's journal (a Redis restarted without persistence forgets claims; an
outage leaves the list readable). How long Redis may take and what feeds may hold come from Settings.redis_*.
Redis-py is imported only here and only when a Redis URL is configured: the default server never pays for it.

When the shared store fails mid-flight: `start_run` without an explicit idempotencyKey refuses (a duplicate
paid run cannot be ruled out) with an error that says to retry; recording the run a start produced is
best effort (logged); followers pace themselves per process and the runs list is read from this replica's
journal until Redis answers again. Reading runs never touches it.
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from mogplex_mcp.config import REDIS_URL_ENV, Settings, mask_redis_url
from mogplex_mcp.runs.local import LocalKnownRuns, LocalStartClaims, LocalVerifiedTokens
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.mirrored_claims import MirroredStartClaims
from mogplex_mcp.runs.mirrored_runs import MirroredKnownRuns
from mogplex_mcp.runs.pacer import RequestPacer
from mogplex_mcp.runs.shared_follow import LEASE_SECONDS, FollowCoordinator, SharedFollowing
from mogplex_mcp.runs.store import (
    KeyClaim,
    KnownRuns,
    StartClaims,
    StartClaimsUnavailableError,
    StoreUnavailableError,
    VerifiedTokens,
)
from mogplex_mcp.runs.token_pacer import SharedTokenPacer

if TYPE_CHECKING:
    from mogplex_mcp.runs.redis.connection import RedisLimits
    from mogplex_mcp.runs.redis.follow_feed import FeedLimits
    from mogplex_mcp.runs.redis.requirements import Finding

logger = logging.getLogger("mogplex_mcp.server")


class GuardedStartClaims:
    """Start claims whose store failures refuse the start (claim: nothing may be sent) or are logged (the rest)."""

    def __init__(self, inner: StartClaims) -> None:
        self.inner = inner

    async def claim_key(self, fingerprint: str, request_hash: str) -> KeyClaim:
        try:
            return await self.inner.claim_key(fingerprint, request_hash)
        except StoreUnavailableError as exc:
            logger.warning("start_run refused: %s", exc)
            raise StartClaimsUnavailableError(str(exc), shared=True) from None

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        try:
            await self.inner.record_started(fingerprint, request_hash, run_id)
        except StoreUnavailableError as exc:
            logger.warning("run %s started, but its claim could not be updated: %s", run_id, exc)

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        try:
            await self.inner.forget(fingerprint, request_hash)
        except StoreUnavailableError as exc:  # the claim then expires with its window
            logger.warning("a failed start's claim could not be dropped: %s", exc)


@dataclass(frozen=True)
class Backends:
    """What the lifespan wires in: start claims, the runs list, and for the follower hub per-token pacers and
    one follower per run across replicas (both None: local, this process only)."""

    claims: StartClaims
    known: KnownRuns
    verified: VerifiedTokens
    make_pacer: Callable[[str], RequestPacer] | None = None
    coordinator: FollowCoordinator | None = None
    shared: bool = False
    # For readiness (/readyz): why the shared store cannot be used now (None: it answers, or there is none).
    store_problem: Callable[[], Awaitable[str | None]] | None = None


@asynccontextmanager
async def open_backends(settings: Settings, journal: StartJournal, requests_per_minute: int) -> AsyncIterator[Backends]:
    """The local backend, or Redis when `settings.redis_url` is set (raises StoreUnavailableError if down)."""
    if not settings.redis_url:
        verified = LocalVerifiedTokens.in_state_dir(settings.state_dir, settings.verified_token_seconds)
        try:
            local = LocalKnownRuns(journal, settings.known_run_max_age_days * 86_400)
            yield Backends(claims=LocalStartClaims(journal), known=local, verified=verified)
        finally:
            verified.close()
        return
    from mogplex_mcp.runs import redis as shared

    store = shared.connect(settings.redis_url, limits=redis_limits(settings))
    try:
        await store.ping()
        logger.info("shared state in Redis at %s", store.masked_url)
        # This replica's journal keeps its claims too: a Redis restarted without persistence loses them.
        claims = MirroredStartClaims(
            shared.RedisStartClaims(store, window_seconds=settings.dedupe_window_seconds), LocalStartClaims(journal)
        )
        pacer = shared.RedisPacer(store, requests_per_minute)
        known = MirroredKnownRuns(
            shared.RedisKnownRuns(store, retention_seconds=int(settings.known_run_max_age_days * 86_400)),
            LocalKnownRuns(journal, settings.known_run_max_age_days * 86_400),
        )
        lease = shared.RedisFollowLease(store, holder=uuid.uuid4().hex, lease_seconds=LEASE_SECONDS)

        async def store_problem() -> str | None:
            try:
                await store.ping()
            except StoreUnavailableError as exc:
                return str(exc)
            return None

        yield Backends(
            claims=GuardedStartClaims(claims),
            known=known,
            verified=shared.RedisVerifiedTokens(store, settings.verified_token_seconds),
            shared=True,
            make_pacer=lambda fp: SharedTokenPacer(pacer, fp),
            coordinator=SharedFollowing(lease, shared.RedisFollowFeed(store, limits=feed_limits(settings))),
            store_problem=store_problem,
        )
    finally:
        await store.aclose()


def redis_limits(settings: Settings) -> RedisLimits:
    from mogplex_mcp.runs.redis.connection import RedisLimits

    return RedisLimits(
        command_seconds=settings.redis_timeout_seconds,
        read_seconds=min(settings.redis_read_timeout_seconds, settings.redis_timeout_seconds),
        breaker_seconds=settings.redis_breaker_seconds,
    )


def shared_store_findings(settings: Settings) -> list[Finding]:
    """What the configured Redis's memory and persistence settings mean here (doctor); [] when none is set."""
    if not settings.redis_url:
        return []

    async def assess() -> list[Finding]:
        from mogplex_mcp.runs import redis as shared
        from mogplex_mcp.runs.redis.requirements import assess

        store = shared.connect(settings.redis_url or "", limits=redis_limits(settings))
        try:
            return await assess(store, feed_limits(settings).high_water)
        finally:
            await store.aclose()

    return anyio.run(assess)


def feed_limits(settings: Settings) -> FeedLimits:
    from mogplex_mcp.runs.redis.follow_feed import FeedLimits

    return FeedLimits(run_bytes=settings.redis_feed_run_bytes, token_bytes=settings.redis_feed_token_bytes)


def shared_store_problem(settings: Settings) -> str | None:
    """Why the configured Redis cannot be used right now (None when it answers, or none is configured)."""
    if not settings.redis_url:
        return None
    if importlib.util.find_spec("redis") is None:
        return (
            f"{REDIS_URL_ENV} / --redis-url needs the Redis client: install `mogplex-mcp[redis]`"
            " (uvx: `uvx --with redis mogplex-mcp ...`)"
        )

    async def ping() -> None:
        from mogplex_mcp.runs import redis as shared

        store = shared.connect(settings.redis_url or "", limits=redis_limits(settings))
        try:
            await store.ping()
        finally:
            await store.aclose()

    try:
        anyio.run(ping)
    except StoreUnavailableError as exc:
        return f"{exc}. Check --redis-url / {REDIS_URL_ENV} ({mask_redis_url(settings.redis_url)})."
    return None
