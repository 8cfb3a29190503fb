"""Rate limits: the per-PAT sliding window and the per-(user, PAT) run-start budget."""

from __future__ import annotations

import math
from collections import deque

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
PER_PAT_RETRY_AFTER = 60  # production always answers Retry-After: 60 for the per-PAT limit


class SlidingWindow:
    """At most `limit` hits in any `window` seconds; 0 means unlimited."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: deque[float] = deque()

    def wait_needed(self, now: float) -> float:
        """Seconds until one more hit fits (0 when it fits now)."""
        if self.limit <= 0:
            return 0.0
        while self._hits and self._hits[0] <= now - self.window:
            self._hits.popleft()
        if len(self._hits) < self.limit:
            return 0.0
        return self._hits[0] + self.window - now

    def hit(self, now: float) -> None:
        if self.limit > 0:
            self._hits.append(now)


class RateLimits:
    """Every limit of every token; windows are created on a token's first request."""

    def __init__(self, per_minute: int, start_limits: tuple[int, int, int]) -> None:
        self.per_minute = per_minute
        self.start_limits = start_limits
        self._requests: dict[str, SlidingWindow] = {}
        self._starts: dict[str, tuple[SlidingWindow, ...]] = {}

    def admit_request(self, token: str, now: float) -> int | None:
        """Count one API request; None if allowed, else the Retry-After to send."""
        window = self._requests.setdefault(token, SlidingWindow(self.per_minute, MINUTE))
        if window.wait_needed(now) > 0:
            return PER_PAT_RETRY_AFTER
        window.hit(now)
        return None

    def spend_start(self, token: str, now: float) -> int | None:
        """Spend one run start from the budget; None if allowed, else the computed Retry-After (>= 1 s)."""
        windows = self._starts.get(token)
        if windows is None:
            windows = tuple(
                SlidingWindow(limit, span) for limit, span in zip(self.start_limits, (MINUTE, HOUR, DAY), strict=True)
            )
            self._starts[token] = windows
        wait = max(window.wait_needed(now) for window in windows)
        if wait > 0:
            return max(1, math.ceil(wait))
        for window in windows:
            window.hit(now)
        return None

    def reset(self) -> None:
        self._requests.clear()
        self._starts.clear()
