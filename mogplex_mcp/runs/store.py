"""The run-supervision state behind one seam: start claims, known runs, the pacer, follow leases, verified tokens.

Each protocol is small and async, with two backends: `runs/local/` (the embedded default: today's SQLite
journal and in-memory pacer, one process) and `runs/redis/` (shared by every replica of an HTTP server).
Both pass one behavioural test suite (`tests/runs/test_store.py`).

Everything is keyed by a token *fingerprint* (`token_fingerprint`), never by the token itself.

`KeyClaim` and `KnownRun` are defined next to the SQLite journal for now and re-exported here; they move
into this module when the journal moves into `runs/local/`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.local.journal import KeyClaim, KnownRun, RunsUnreadable
from mogplex_mcp.runs.local.known_runs import RunFacts, RunsQuery

__all__ = [
    "FeedUpdate",
    "FollowFeed",
    "FollowLease",
    "KeyClaim",
    "KnownRun",
    "KnownRuns",
    "Pacer",
    "RunFacts",
    "RunsQuery",
    "RunsUnreadable",
    "StartClaims",
    "StoreUnavailableError",
    "VerifiedTokens",
    "spending_store_time",
    "store_budget",
    "store_time_left",
    "token_fingerprint",
    "unbudgeted",
]


@dataclass
class _StoreBudget:
    left: float  # seconds the shared store may still take in this call


# The shared store's time budget of the current tool call (None: no budget, e.g. background work).
_budget: ContextVar[_StoreBudget | None] = ContextVar("mogplex_store_budget", default=None)


@contextmanager
def store_budget(seconds: float) -> Iterator[None]:
    """Every shared-store command inside the block together may take at most `seconds` (one tool call).

    It counts time spent waiting on the store, not the call's own time: a 50 s wait_for_run still records its
    run in Redis at the end. Backends cut each command at what is left and fail at once when nothing is, so a
    tool call that touches the store several times waits on it `seconds` at most in all. Nested: the outer
    budget rules.
    """
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_StoreBudget(max(0.0, seconds)))
    try:
        yield
    finally:
        _budget.reset(token)


@contextmanager
def unbudgeted() -> Iterator[None]:
    """No call budget inside the block: for background work a tool call starts (it inherits the call's context)."""
    token = _budget.set(None)
    try:
        yield
    finally:
        _budget.reset(token)


def store_time_left() -> float | None:
    """Seconds the store may still take in this call; None outside any budget."""
    budget = _budget.get()
    return None if budget is None else budget.left


@contextmanager
def spending_store_time() -> Iterator[None]:
    """Charge the time the block takes to the call's store budget (a no-op outside one)."""
    budget = _budget.get()
    began = time.monotonic()
    try:
        yield
    finally:
        if budget is not None:
            budget.left -= time.monotonic() - began


class StoreUnavailableError(Exception):
    """The shared store (Redis) cannot be reached or answered with an error; retrying later may work.

    The message names what failed and never contains credentials.
    """


class StartClaims(Protocol):
    """De-duplicates identical starts: within the window, an identical start gets the same Idempotency-Key."""

    async def claim_key(self, fingerprint: str, request_hash: str) -> KeyClaim:
        """Reuse the key of an identical start within the window, else take a fresh one atomically."""
        ...

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        """Attach the run a claimed start produced, so a replayed claim can name it."""
        ...

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        """Drop a claim whose start definitely failed, so the next identical start gets a fresh key."""
        ...


class KnownRuns(Protocol):
    """Runs this server started or looked at, per token fingerprint, newest first, bounded."""

    async def remember_run(
        self,
        fingerprint: str,
        run_id: str,
        *,
        title: str | None = None,
        status: str | None = None,
        repo_id: str | None = None,
        facts: RunFacts | None = None,
    ) -> bool | None:
        """Upsert a run seen with this token; True when it was not known before (the list changed).

        `facts` fields left None keep what is stored. None when the bookkeeping was skipped (the store was
        busy or failing): best-effort, never a wait.
        """
        ...

    async def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        """One page of this token's runs, newest first, after `query.before` (first_seen, position).

        RunsUnreadable when the list cannot be read: callers say so, never "no runs"."""
        ...

    async def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        """One run seen with this token, with its facts; None when unknown."""
        ...

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        """Runs seen with this token, most recently first seen first, at most `limit` (RunsUnreadable as above)."""
        ...

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        """Whether a run was seen with this token."""
        ...


class Pacer(Protocol):
    """Each token's upstream request budget: at most `per_minute` requests in any sliding window."""

    per_minute: int

    async def acquire(self, fingerprint: str) -> float:
        """Wait for a slot, take it, and return when it was taken (seconds on the backend's clock)."""
        ...

    async def pause(self, fingerprint: str, seconds: float) -> None:
        """Hold every request of this token for `seconds` (the upstream said 429 / Retry-After)."""
        ...

    async def delay_needed(self, fingerprint: str) -> float:
        """Seconds until this token's next request may go out (0 when it may go now)."""
        ...


class VerifiedTokens(Protocol):
    """Which token fingerprints upstream accepted, and when: kept across restarts (and shared by replicas).

    Entries older than the backend's `keep_seconds` are gone; a refusal (401) removes one at once.
    """

    async def record(self, fingerprint: str, accepted_at: float | None) -> None:
        """Upstream accepted the token at `accepted_at` (wall clock); None: it refused it, forget it."""
        ...

    async def recent(self, since: float, limit: int = 10_000) -> dict[str, float]:
        """Fingerprints accepted at or after `since` (within `keep_seconds`), the newest `limit`, with when."""
        ...

    async def accepted_at(self, fingerprint: str) -> float | None:
        """When upstream last accepted this token (within `keep_seconds`); None when not known."""
        ...


class FollowLease(Protocol):
    """A per-run lease: at most one holder (replica) follows a run at a time; it expires unless renewed."""

    holder: str

    async def acquire(self, name: str) -> bool:
        """Take the lease `name` if nobody (else) holds it; True when this holder now has it."""
        ...

    async def renew(self, name: str) -> bool:
        """Extend the lease if this holder still has it; False when it was lost (expired, taken over)."""
        ...

    async def release(self, name: str) -> bool:
        """Give the lease up if this holder has it; False when it held nothing."""
        ...


@dataclass(frozen=True)
class FeedUpdate:
    """What a run's leader saw change: the run's latest detail and the events new to it."""

    run: RunDetail | None
    events: list[RunEvent] = field(default_factory=list)
    window_exhausted: bool = False
    # The leader stopped sharing this run (a feed budget or Redis memory ran short), or wrote a format this
    # replica does not know (`newer_format`): readers follow the run upstream by themselves.
    follow_alone: bool = False
    newer_format: int | None = None


class FollowFeed(Protocol):
    """A bounded, ordered log per (token fingerprint, run): the leader appends, other replicas read on."""

    async def publish(self, fingerprint: str, run_id: str, update: FeedUpdate) -> None:
        """Append an update (the oldest entries are trimmed past the feed's bound)."""
        ...

    async def read(
        self, fingerprint: str, run_id: str, after: str, block_seconds: float
    ) -> list[tuple[str, FeedUpdate]]:
        """Updates after entry id `after` ("0": from the oldest kept), waiting up to `block_seconds` for one."""
        ...
