"""`FollowFeed` on Redis: one Stream per (token fingerprint, run), bounded in entries and bytes, expiring when idle.

The leader of a run (the replica holding its follow lease) appends what it sees; every other replica
reads on from its last entry id with a blocking XREAD, so it never asks the upstream itself.

What one user's runs can hold in a shared Redis is bounded (`FeedLimits`): entries are compact
(feed_format.py), a run's feed keeps at most `run_bytes` (oldest entries dropped first, one Lua script), and a
token publishes at most `token_bytes` per `token_window_seconds` in all. Bulk data also yields to start
claims: while Redis's memory is above `high_water` of its `maxmemory`, nothing but a tiny marker is written.
When a run cannot be shared (either budget), the leader appends that marker once and stops publishing the
run; readers then follow it upstream by themselves, so no wait is left with stale data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors
from mogplex_mcp.runs.redis.feed_format import FORMAT_VERSION, FeedEntryError, decode_entry, encode_update
from mogplex_mcp.runs.store import FeedUpdate, StoreUnavailableError

logger = logging.getLogger("mogplex_mcp.runs.redis")

READ_BATCH = 100
MEMORY_CHECK_SECONDS = 2.0
KEPT_NAMES = 10_000
ALONE_SECONDS = 60.0  # a run not shared is not offered to Redis again for this long


@dataclass(frozen=True)
class FeedLimits:
    """What feeds may hold in Redis (docs/scale.md "Redis memory")."""

    max_entries: int = 1_000
    ttl_seconds: int = 3_600  # a feed nobody wrote to for this long is dropped by Redis
    run_bytes: int = 1024 * 1024
    token_bytes: int = 8 * 1024 * 1024
    token_window_seconds: int = 3_600
    high_water: float = 0.8  # of maxmemory: above it, only start claims and small keys are written


# Kept for callers that name the old constants.
FEED_MAX_ENTRIES = FeedLimits.max_entries
FEED_TTL_SECONDS = FeedLimits.ttl_seconds


class RedisFollowFeed:
    """Run feeds in Redis Streams; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self,
        store: RedisStore,
        max_entries: int | None = None,
        ttl_seconds: int | None = None,
        *,
        limits: FeedLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        base = limits or FeedLimits()
        self.limits = dataclasses.replace(
            base, max_entries=max_entries or base.max_entries, ttl_seconds=ttl_seconds or base.ttl_seconds
        )
        self._clock = clock
        self._publish = store.script("publish")
        self._alone: dict[tuple[str, str], float] = {}  # runs this replica stopped sharing, until when
        self._reported: set[str] = set()  # feeds whose bad entries were logged
        self._memory_checked_at = float("-inf")
        self._memory_tight = False
        self._memory_unknown = False

    async def publish(self, fingerprint: str, run_id: str, update: FeedUpdate) -> None:
        if self._clock() < self._alone.get((fingerprint, run_id), float("-inf")):
            return
        if await self._memory_is_tight():
            await self._stop_sharing(fingerprint, run_id, "Redis memory is above its high-water mark")
            return
        payload = encode_update(update)
        if not await self._append(fingerprint, run_id, payload, marker=False):
            await self._stop_sharing(fingerprint, run_id, "this token's feed budget for the hour is spent")

    async def _append(self, fingerprint: str, run_id: str, payload: str, *, marker: bool) -> bool:
        keys = [
            self._store.key("feed", fingerprint, run_id),
            self._store.key("feed-bytes", fingerprint, run_id),
            self._store.key("feed-spent", fingerprint),
        ]
        limits = self.limits
        args: list[str | int] = [
            FORMAT_VERSION, payload, len(payload.encode()), limits.max_entries, limits.ttl_seconds,
            limits.run_bytes, limits.token_bytes, limits.token_window_seconds, "1" if marker else "0",
        ]  # fmt: skip
        async with redis_errors(self._store, "publish a run's update"):
            return bool(await self._publish(keys=keys, args=args))

    async def _stop_sharing(self, fingerprint: str, run_id: str, why: str) -> None:
        """Tell the readers to follow this run by themselves, and publish nothing of it for a while.

        Then the budgets are asked again (and the marker written again if they still say no), so a reader that
        arrives later — the feed may have expired meanwhile — is told too.
        """
        if len(self._alone) >= KEPT_NAMES:
            self._alone.clear()
        self._alone[(fingerprint, run_id)] = self._clock() + ALONE_SECONDS
        logger.warning("run %s is no longer shared through Redis (%s): each replica follows it itself", run_id, why)
        await self._append(fingerprint, run_id, encode_update(FeedUpdate(run=None, follow_alone=True)), marker=True)

    async def _memory_is_tight(self) -> bool:
        """Whether Redis's used memory is above the high-water mark of its maxmemory (checked every 2 s)."""
        now = self._clock()
        if now - self._memory_checked_at < MEMORY_CHECK_SECONDS:
            return self._memory_tight
        self._memory_checked_at = now
        try:
            async with redis_errors(self._store, "read Redis's memory use"):
                info: dict[str, Any] = await self._store.client.info("memory")
        except StoreUnavailableError as exc:  # e.g. INFO disabled by a managed service: publish without the guard
            if not self._memory_unknown:
                self._memory_unknown = True
                logger.warning("Redis memory use cannot be read (%s): feeds are written without the guard", exc)
            return False
        used, most = int(info.get("used_memory") or 0), int(info.get("maxmemory") or 0)
        self._memory_tight = most > 0 and used >= most * self.limits.high_water
        return self._memory_tight

    async def read(
        self, fingerprint: str, run_id: str, after: str, block_seconds: float
    ) -> list[tuple[str, FeedUpdate]]:
        key = self._store.key("feed", fingerprint, run_id)
        async with redis_errors(self._store, "read a run's feed", block_seconds=block_seconds):
            answer: Any = await self._store.client.xread(
                {key: after}, count=READ_BATCH, block=max(1, round(block_seconds * 1000))
            )
        updates: list[tuple[str, FeedUpdate]] = []
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                try:
                    updates.append((str(entry_id), decode_entry(fields)))
                except FeedEntryError as exc:  # skipped (its id still moves the cursor on)
                    self._report(key, run_id, str(exc))
                    updates.append((str(entry_id), FeedUpdate(run=None)))
        return updates

    def _report(self, key: str, run_id: str, what: str) -> None:
        if key in self._reported:
            return
        if len(self._reported) >= KEPT_NAMES:
            self._reported.clear()
        self._reported.add(key)
        logger.warning(
            "run %s: skipped %s in its Redis feed (later ones of this feed are skipped silently)", run_id, what
        )
