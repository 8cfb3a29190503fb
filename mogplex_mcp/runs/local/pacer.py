"""`Pacer` in memory: one `RequestPacer` per token fingerprint, for this process only."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from mogplex_mcp.runs.pacer import MAX_PACERS, PacerTable, RequestPacer


class LocalPacer:
    """Per-token sliding-window budgets held in this process (what a single server needs)."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        max_pacers: int = MAX_PACERS,
    ) -> None:
        self.per_minute = max(1, per_minute)
        self._clock = clock
        self._sleep = sleep
        self._pacers = PacerTable(self._new, max_pacers)

    def _new(self, fingerprint: str) -> RequestPacer:
        return RequestPacer(self.per_minute, clock=self._clock, sleep=self._sleep)

    @property
    def tracked(self) -> int:
        """Pacers held (bounded: see PacerTable)."""
        return len(self._pacers)

    def for_token(self, fingerprint: str) -> RequestPacer:
        """The token's `RequestPacer`, made on first use (and forgotten once idle for a window)."""
        return self._pacers.get(fingerprint)

    async def acquire(self, fingerprint: str) -> float:
        await self.for_token(fingerprint).acquire()
        return self._clock()

    async def pause(self, fingerprint: str, seconds: float) -> None:
        self.for_token(fingerprint).pause(seconds)

    async def delay_needed(self, fingerprint: str) -> float:
        return self.for_token(fingerprint).delay_needed()
