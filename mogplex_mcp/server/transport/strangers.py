"""Requests in flight of callers whose token upstream has not accepted (yet): their own small budget.

A stranger's request — above all a long one: a `GET /mcp` notification stream, a `subscriptions/listen`
stream, a long wait — holds a connection and a slot of the session it uses. So that made-up bearers can never
fill `--max-connections` or `--max-sessions` with busy requests, requests of tokens upstream has not accepted
are counted per client address and in all, and refused past either share (`429` / `503`, `Retry-After`)
before the SDK sees them. A token leaves this budget as soon as upstream accepts it (its first tool call),
and a user upstream accepted before a restart is remembered (runs/identities.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# A real user new to this server may fire a burst of parallel calls before its token is accepted: 32 fit.
DEFAULT_PER_CLIENT = 32
DEFAULT_TOTAL = 128


@dataclass(frozen=True)
class StrangerLimits:
    per_client: int = DEFAULT_PER_CLIENT
    total: int = DEFAULT_TOTAL

    def __post_init__(self) -> None:
        if min(self.per_client, self.total) < 1:
            raise ValueError("the budget of unverified callers must be at least 1")


class StrangerRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StrangerRequests:
    """Counts unverified callers' requests in flight by client address (module docstring)."""

    def __init__(self, limits: StrangerLimits | None = None) -> None:
        self.limits = limits or StrangerLimits()
        self.in_flight = 0
        self.refused = 0
        self._by_client: Counter[str] = Counter()

    def of(self, client: str) -> int:
        return self._by_client[client]

    def enter(self, client: str) -> None:
        if self._by_client[client] >= self.limits.per_client:
            self.refused += 1
            raise StrangerRefused(
                429,
                f"This address already has {self.limits.per_client} requests in flight with tokens Mogplex has not "
                "accepted yet: retry when one ends.",
            )
        if self.in_flight >= self.limits.total:
            self.refused += 1
            raise StrangerRefused(503, "The server serves as many requests of not-yet-accepted tokens as it takes.")
        self._by_client[client] += 1
        self.in_flight += 1

    def leave(self, client: str) -> None:
        self.in_flight -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
