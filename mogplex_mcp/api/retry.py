"""The retry policy: which failures deserve another attempt, and how long to wait first.

Pure functions over a frozen `RetryPolicy`; the client injects the clock, the sleep and the random source,
so every decision here can be tested without waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mogplex_mcp.api.errors import (
    ApiStatusError,
    ConflictError,
    TransportError,
)
from mogplex_mcp.config import Settings

# 408 Request Timeout, 429 Too Many Requests, and every 5xx (including a proxy's HTML 502/504).
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries before it gives up."""

    max_retries: int = 2
    """Attempts after the first."""
    base_delay: float = 0.5
    """The first backoff; it doubles on each retry (with jitter), capped at `max_delay`."""
    max_delay: float = 8.0
    max_retry_after: float = 10.0
    """The longest `Retry-After` we wait through; beyond it we stop and raise (the error carries it)."""
    budget_seconds: float = 20.0
    """Wall-clock for the whole call, retries included (0 = no budget: no retries, no cut on the
    attempt). A sleep that would overrun it is never started."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be zero or more")
        for name in ("base_delay", "max_delay", "max_retry_after", "budget_seconds"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be zero or more seconds, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            max_retry_after=settings.max_retry_after_seconds,
            budget_seconds=settings.retry_budget_seconds,
        )


NO_RETRIES = RetryPolicy(max_retries=0)


def is_retryable(exc: BaseException) -> bool:
    """True when the same request, sent again unchanged, may well succeed.

    Connection failures and timeouts: yes. 408, 429 and 5xx: yes. Any 409 — IDEMPOTENCY_CONFLICT (same
    key, different body: repeating cannot help) or CONFLICT (cancel on a sandbox that is unreachable or not
    ready: the caller decides when to try again) — no. Every other 4xx, a redirect, or an unreadable 2xx: no.
    """
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ConflictError) or not isinstance(exc, ApiStatusError):
        return False
    return exc.status in _RETRYABLE_4XX or exc.status >= 500


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """The wait before retry `attempt` (1-based): base·2^(attempt-1), capped, less up to 25 % jitter."""
    exponent = min(max(attempt - 1, 0), 32)
    ceiling = min(policy.max_delay, policy.base_delay * 2.0**exponent)
    return ceiling * (1 - 0.25 * rng.random())


def retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, ApiStatusError) else None


def next_delay(
    exc: BaseException,
    attempt: int,
    policy: RetryPolicy,
    elapsed: float,
    rng: random.Random,
    *,
    remaining: float | None = None,
) -> float | None:
    """How long to sleep before the next attempt, or None to give up and raise `exc`.

    `attempt` is the number of attempts already made (1 after the first failure); `elapsed` the seconds
    since the call began; `remaining` the seconds left before the caller's own deadline, if it set one.
    """
    if not is_retryable(exc) or attempt > policy.max_retries:
        return None
    retry_after = retry_after_of(exc)
    if retry_after is not None and retry_after > policy.max_retry_after:
        return None
    delay = retry_after if retry_after else backoff_delay(attempt, policy, rng)
    # The next attempt needs time too, so a sleep that ends exactly at the limit is as useless as one past it.
    if elapsed + delay >= policy.budget_seconds:
        return None
    if remaining is not None and delay >= remaining:
        return None
    return delay
