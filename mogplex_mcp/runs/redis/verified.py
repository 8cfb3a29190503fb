"""`VerifiedTokens` on Redis: one sorted set of fingerprints scored by when upstream accepted them.

Every replica writes its acceptances there and reads the others' (at start and then every half minute), so a
user verified on one replica skips the queue of not-yet-accepted tokens on all of them, across deploys.
Old entries are trimmed on every write (by age, then to the newest MAX_KEPT); the set holds fingerprints only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors

MAX_KEPT = 10_000


class RedisVerifiedTokens:
    """Acceptances shared by every replica; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self,
        store: RedisStore,
        keep_seconds: float,
        *,
        max_kept: int = MAX_KEPT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._key = store.key("verified")
        self.keep_seconds = keep_seconds
        self.max_kept = max_kept
        self._clock = clock

    async def record(self, fingerprint: str, accepted_at: float | None) -> None:
        async with redis_errors(self._store, "record a verified token"):
            if accepted_at is None:
                await self._store.client.zrem(self._key, fingerprint)
                return
            async with self._store.client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key, {fingerprint: accepted_at}, gt=True)
                pipe.zremrangebyscore(self._key, "-inf", f"({self._clock() - self.keep_seconds}")
                pipe.zremrangebyrank(self._key, 0, -self.max_kept - 1)
                pipe.expire(self._key, max(1, int(self.keep_seconds)))
                await pipe.execute()

    async def recent(self, since: float, limit: int = MAX_KEPT) -> dict[str, float]:
        oldest = max(since, self._clock() - self.keep_seconds)
        async with redis_errors(self._store, "read verified tokens"):
            rows = await self._store.client.zrevrangebyscore(
                self._key, "+inf", oldest, start=0, num=limit, withscores=True
            )
        return {str(row[0]): float(row[1]) for row in rows}

    async def accepted_at(self, fingerprint: str) -> float | None:
        async with redis_errors(self._store, "read a verified token"):
            score = await self._store.client.zscore(self._key, fingerprint)
        if score is None or float(score) < self._clock() - self.keep_seconds:
            return None
        return float(score)
