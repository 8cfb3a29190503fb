"""`Pacer` on Redis: each token's sliding 60 s window kept in Redis, so all replicas together stay in budget.

Taking a slot is one Lua script (atomic on the server, timed by the server's clock, so replicas' clocks do
not matter). A 429 seen by one replica sets a pause key that holds the token's requests on all of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import anyio

from mogplex_mcp.runs.pacer import WINDOW_SECONDS
from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors

# A waiter looks again at least this often: another replica's slots may expire sooner than it was told.
MAX_WAIT_STEP_SECONDS = 1.0


class RedisPacer:
    """Per-token budgets shared by every replica; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self,
        store: RedisStore,
        per_minute: int,
        *,
        window_seconds: float = WINDOW_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._store = store
        self.per_minute = max(1, per_minute)
        self._window_us = max(1, round(window_seconds * 1_000_000))
        self._sleep = sleep
        self._pace = store.script("pace")
        self._pause = store.script("pause")

    def _keys(self, fingerprint: str) -> list[str]:
        return [self._store.key("pace", fingerprint), self._store.key("pause", fingerprint)]

    async def _ask(self, fingerprint: str, take: bool) -> tuple[bool, int]:
        args: list[str | int] = [self.per_minute, self._window_us, uuid.uuid4().hex, "1" if take else "0"]
        async with redis_errors(self._store, "take a request slot"):
            granted, value = await self._pace(keys=self._keys(fingerprint), args=args)
        return bool(granted), int(value)

    async def acquire(self, fingerprint: str) -> float:
        while True:
            granted, value = await self._ask(fingerprint, take=True)
            if granted:
                return value / 1_000_000
            await self._sleep(min(max(value / 1_000_000, 0.001), MAX_WAIT_STEP_SECONDS))

    async def pause(self, fingerprint: str, seconds: float) -> None:
        milliseconds = round(seconds * 1000)
        if milliseconds <= 0:
            return
        async with redis_errors(self._store, "pause a token's requests"):
            await self._pause(keys=[self._keys(fingerprint)[1]], args=[milliseconds])

    async def delay_needed(self, fingerprint: str) -> float:
        granted, value = await self._ask(fingerprint, take=False)
        return 0.0 if granted else value / 1_000_000
