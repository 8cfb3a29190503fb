"""One token's upstream request budget, shared by every run followed with that token."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

WINDOW_SECONDS = 60.0


class RequestPacer:
    """A sliding-window limiter: at most `per_minute` requests in any 60 s, and a pause on 429.

    The upstream allows 60 requests/min per PAT for everything; followers take a share of it
    (default 40) so tool calls made by the model still have room.
    """

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
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = anyio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (the upstream said Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def delay_needed(self) -> float:
        """Seconds to wait before the next request may go out (0 when it may go now)."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= WINDOW_SECONDS:
            self._sent.popleft()
        wait = max(0.0, self._paused_until - now)
        if len(self._sent) >= self.per_minute:
            wait = max(wait, self._sent[0] + WINDOW_SECONDS - now)
        return wait

    async def acquire(self) -> None:
        """Wait for a slot, then take it."""
        async with self._lock:
            while (wait := self.delay_needed()) > 0:
                await self._sleep(wait)
            self._sent.append(self._clock())

    @property
    def sent_in_window(self) -> int:
        self.delay_needed()
        return len(self._sent)
