"""Start claims and known runs on today's SQLite `StartJournal`, behind the async `runs/store.py` protocols.

The journal is synchronous (short SQLite transactions); each call runs in a worker thread so the event loop
never waits on the file. The journal degrades to memory on its own when its file fails.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.store import KeyClaim, KnownRun, RunFacts, RunsQuery
from mogplex_mcp.telemetry import tracing

_T = TypeVar("_T")


async def _journal(operation: str, work: Callable[..., _T], *args: object) -> _T:
    """`work(*args)` in a worker thread, inside a `journal <operation>` span."""
    with tracing.span(f"journal {operation}", {"db.system.name": "sqlite"}):
        return await anyio.to_thread.run_sync(work, *args)


class LocalStartClaims:
    """`StartClaims` on the SQLite journal: atomic across processes that share the file."""

    def __init__(self, journal: StartJournal) -> None:
        self.journal = journal

    async def claim_key(self, fingerprint: str, request_hash: str, proposed: str | None = None) -> KeyClaim:
        """As `StartClaims.claim_key`; a fresh claim takes `proposed` as its key when given."""
        if proposed is None:
            return await _journal("claim_key", self.journal.claim_key, fingerprint, request_hash)
        claim = functools.partial(self.journal.claim_key, fingerprint, request_hash, new_key=lambda: proposed)
        return await _journal("claim_key", claim)

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        await _journal("record_started", self.journal.record_started, fingerprint, request_hash, run_id)

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        await _journal("forget", self.journal.forget, fingerprint, request_hash)


# Known runs not seen for this long are no longer served (issue 23, #7; Redis keeps them as long).
DEFAULT_MAX_AGE_SECONDS = 30 * 86_400.0


class LocalKnownRuns:
    """`KnownRuns` on the SQLite journal (bounded per token by the journal's `max_runs`, and in age: a run not
    seen for `max_age_seconds` is not served any more, and newer runs overwrite it)."""

    def __init__(
        self,
        journal: StartJournal,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.max_age_seconds = max_age_seconds
        self._clock = clock

    def _fresh(self, known: KnownRun | None) -> bool:
        return known is not None and known.last_seen >= self._clock() - self.max_age_seconds

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
        upsert = functools.partial(
            self.journal.remember_run, fingerprint, run_id, title=title, status=status, repo_id=repo_id, facts=facts
        )
        return await _journal("remember_run", upsert)

    async def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        rows = await _journal("runs_page", self.journal.runs_page, fingerprint, query)
        return [known for known in rows if self._fresh(known)]

    async def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        known = await _journal("known_run", self.journal.known_run, fingerprint, run_id)
        return known if self._fresh(known) else None

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        rows = await _journal("known_runs", self.journal.known_runs, fingerprint, limit)
        return [known for known in rows if self._fresh(known)]

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        return await self.known_run(fingerprint, run_id) is not None
