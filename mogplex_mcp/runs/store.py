"""The run-supervision state behind one seam: start claims, known runs, the pacer, follow leases, verified tokens.

Each protocol is small and async, with two backends: `runs/local/` (the embedded default: today's SQLite
journal and in-memory pacer, one process) and `runs/redis/` (shared by every replica of an HTTP server).
Both pass one behavioural test suite (`tests/runs/test_store.py`).

Everything is keyed by a token *fingerprint* (`runs/fingerprints.py`), never by the token itself. The
value types the protocols pass (`KeyClaim`, `KnownRun`, `RunFacts`, `RunsQuery`, `FeedUpdate`) are defined
here, so a backend imports this module and nothing of another backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs.views import Delivery

__all__ = [
    "DEFAULT_MAX_RUNS",
    "DEFAULT_WINDOW_SECONDS",
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
    "StartClaimsUnavailableError",
    "StoreUnavailableError",
    "VerifiedTokens",
    "facts_of",
]

# How long an identical start reuses the first one's Idempotency-Key, and how many runs are kept per token.
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MAX_RUNS = 200


@dataclass(frozen=True)
class KeyClaim:
    """The Idempotency-Key to send for a start, and whether an earlier identical start already holds it."""

    idempotency_key: str
    reused: bool
    age_seconds: float
    run_id: str | None = None  # the run that earlier start produced, once recorded
    durable: bool = True  # False: held in this process only (the file could not be written)


@dataclass(frozen=True)
class RunFacts:
    """What list_runs and continue_run need to know of a run beyond its status; None = not known.

    `conversation_id`/`workspace_session_id` are only ever what this server itself sent for the run.
    """

    created_at: str | None = None  # ISO-8601, as the API gave it
    updated_at: str | None = None
    working_branch: str | None = None
    root_directory: str | None = None
    harness: str | None = None
    conversation_id: str | None = None
    workspace_session_id: str | None = None
    pull_request_url: str | None = None
    code_changed: bool | None = None
    # A finished run's derived outcome (runs/views.py `Delivered`), as get_run told it; None: not recorded.
    delivered: str | None = None
    changed_files_total: int | None = None


@dataclass(frozen=True)
class KnownRun:
    """A run this server started or looked at; `title` falls back to the run id."""

    run_id: str
    title: str
    status: str | None
    repo_id: str | None
    first_seen: float
    last_seen: float
    facts: RunFacts = field(default_factory=RunFacts)
    position: int = 0  # with first_seen, the paging cursor: stable while the run is kept


@dataclass(frozen=True)
class RunsQuery:
    """One page of known runs, newest first: after `before` = (first_seen, position) of the last one shown."""

    limit: int = 20
    before: tuple[float, int] | None = None
    repo_id: str | None = None
    terminal: bool | None = None  # True: finished runs only; False: active (or status never seen) only


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def facts_of(run: RunDetail, delivery: Delivery | None = None) -> RunFacts:
    """The facts a run's detail (and its delivery, when known) tells."""
    return RunFacts(
        created_at=_iso(run.created_at),
        updated_at=_iso(run.updated_at),
        working_branch=run.branch.working if run.branch else None,
        root_directory=run.root_directory,
        harness=run.harness,
        pull_request_url=delivery.pull_request_url if delivery else None,
        code_changed=delivery.changed if delivery else None,
    )


class RunsUnreadable(Exception):
    """The runs list cannot be read just now (the journal file fails): not the same as an empty list."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailableError(Exception):
    """The shared store (Redis) cannot be reached or answered with an error; retrying later may work.

    The message names what failed and never contains credentials.
    """


class StartClaimsUnavailableError(Exception):
    """No Idempotency-Key can be vouched for right now: a start sent with a fresh one could become a second paid
    run, so nothing may be sent. Retrying later may work.

    `reason` names what failed and never contains credentials; `shared` is True when the shared store (Redis)
    failed rather than this process's journal file.
    """

    def __init__(self, reason: str, *, shared: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.shared = shared


class StartClaims(Protocol):
    """De-duplicates identical starts: within the window, an identical start gets the same Idempotency-Key."""

    async def claim_key(self, fingerprint: str, request_hash: str) -> KeyClaim:
        """Reuse the key of an identical start within the window, else take a fresh one atomically.

        Raises `StartClaimsUnavailableError` when neither is possible without risking a second run.
        """
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
