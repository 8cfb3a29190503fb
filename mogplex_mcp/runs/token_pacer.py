"""`SharedTokenPacer`: one token's `RequestPacer` whose budget and 429 pauses live in a shared `Pacer`.

The follower hub asks each token's pacer for a slot before every upstream request. With a shared backend
(Redis) the slot comes from the budget all replicas share, and a 429 seen here pauses the token everywhere.
If the shared store fails, pacing falls back to this process's own window (logged once per outage), so
following keeps working — the budget is then per replica until the store answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from mogplex_mcp.runs.pacer import RequestPacer
from mogplex_mcp.runs.store import Pacer, StoreUnavailableError

logger = logging.getLogger("mogplex_mcp.runs")

# After a failure the shared store is asked again only this much later: a hanging store (each command waits
# for its timeout) must not slow every request of every follower.
RETRY_SHARED_AFTER_SECONDS = 5.0


class SharedTokenPacer(RequestPacer):
    """A drop-in `RequestPacer` for one token fingerprint, backed by a shared `Pacer`."""

    def __init__(
        self,
        shared: Pacer,
        fingerprint: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        super().__init__(shared.per_minute, clock=clock, sleep=sleep)
        self._shared = shared
        self._fingerprint = fingerprint
        self._pending_pause = 0.0
        self._degraded = False
        self._retry_shared_at = 0.0

    def pause(self, seconds: float) -> None:
        """Pause here at once; the pause reaches the other replicas with this token's next request."""
        super().pause(seconds)
        self._pending_pause = max(self._pending_pause, seconds)

    async def acquire(self) -> None:
        if self._degraded and self._clock() < self._retry_shared_at:
            await super().acquire()
            return
        try:
            if self._pending_pause > 0:
                await self._shared.pause(self._fingerprint, self._pending_pause)
                self._pending_pause = 0.0
            await self._shared.acquire(self._fingerprint)
        except StoreUnavailableError as exc:
            if not self._degraded:
                logger.warning("request pacing falls back to this process's own budget: %s", exc)
                self._degraded = True
            self._retry_shared_at = self._clock() + RETRY_SHARED_AFTER_SECONDS
            await super().acquire()
            return
        if self._degraded:
            logger.warning("request pacing is shared again (the store answers)")
            self._degraded = False
