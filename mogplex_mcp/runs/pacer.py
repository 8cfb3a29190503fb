"""One token's upstream request budget, shared by every run followed with that token."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import anyio

WINDOW_SECONDS = 60.0
# Pacers kept at most (one per token fingerprint); past it, the least recently used idle ones go first.
MAX_PACERS = 10_000


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

    @property
    def idle(self) -> bool:
        """Nothing in its window and no pause: forgetting it loses nothing (a new one would behave the same)."""
        return self.delay_needed() == 0 and not self._sent and not self._lock.locked()


class PacerTable:
    """One pacer per token fingerprint, bounded in count and age (issue 23, #3).

    A pacer idle for a whole window is forgotten when the table is touched, and past `max_pacers` the least
    recently used idle ones go: whatever bearers come and go, the table holds only the tokens that sent a
    request within the last minute (and at most `max_pacers` more).
    """

    def __init__(self, make: Callable[[str], RequestPacer], max_pacers: int = MAX_PACERS) -> None:
        self._make = make
        self._max = max_pacers
        self._pacers: OrderedDict[str, RequestPacer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pacers)

    def values(self) -> list[RequestPacer]:
        return list(self._pacers.values())

    def get(self, fingerprint: str) -> RequestPacer:
        pacer = self._pacers.get(fingerprint)
        if pacer is None:
            self._sweep()
            pacer = self._pacers[fingerprint] = self._make(fingerprint)
        self._pacers.move_to_end(fingerprint)
        return pacer

    def _sweep(self) -> None:
        """Drop idle pacers from the least recently used end; stop at the first busy one unless over the cap."""
        over = len(self._pacers) - self._max + 1
        for fingerprint in list(self._pacers):
            pacer = self._pacers[fingerprint]
            if pacer.idle:
                del self._pacers[fingerprint]
                over -= 1
            elif over <= 0:
                return
