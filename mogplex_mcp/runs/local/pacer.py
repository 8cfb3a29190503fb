"""`Pacer` in memory: one `RequestPacer` per token fingerprint, for this process only."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from mogplex_mcp.runs.pacer import RequestPacer


class LocalPacer:
    """Per-token sliding-window budgets held in this process (what a single server needs)."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.per_minute = max(1, per_minute)
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[str, RequestPacer] = {}

    def for_token(self, fingerprint: str) -> RequestPacer:
        """The token's `RequestPacer`, made on first use."""
        pacer = self._pacers.get(fingerprint)
        if pacer is None:
            pacer = RequestPacer(self.per_minute, clock=self._clock, sleep=self._sleep)
            self._pacers[fingerprint] = pacer
        return pacer

    async def acquire(self, fingerprint: str) -> float:
        await self.for_token(fingerprint).acquire()
        return self._clock()

    async def pause(self, fingerprint: str, seconds: float) -> None:
        self.for_token(fingerprint).pause(seconds)

    async def delay_needed(self, fingerprint: str) -> float:
        return self.for_token(fingerprint).delay_needed()
