"""Start claims and known runs on today's SQLite `StartJournal`, behind the async `runs/store.py` protocols.

The journal is synchronous (short SQLite transactions); each call runs in a worker thread so the event loop
never waits on the file. The journal degrades to memory on its own when its file fails.
"""

from __future__ import annotations

import functools

import anyio

from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.store import KeyClaim, KnownRun, RunFacts, RunsQuery


class LocalStartClaims:
    """`StartClaims` on the SQLite journal: atomic across processes that share the file."""

    def __init__(self, journal: StartJournal) -> None:
        self.journal = journal

    async def claim_key(self, fingerprint: str, request_hash: str) -> KeyClaim:
        return await anyio.to_thread.run_sync(self.journal.claim_key, fingerprint, request_hash)

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        await anyio.to_thread.run_sync(self.journal.record_started, fingerprint, request_hash, run_id)

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        await anyio.to_thread.run_sync(self.journal.forget, fingerprint, request_hash)


class LocalKnownRuns:
    """`KnownRuns` on the SQLite journal (bounded per token by the journal's `max_runs`)."""

    def __init__(self, journal: StartJournal) -> None:
        self.journal = journal

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
        return await anyio.to_thread.run_sync(upsert)

    async def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        return await anyio.to_thread.run_sync(self.journal.runs_page, fingerprint, query)

    async def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        return await anyio.to_thread.run_sync(self.journal.known_run, fingerprint, run_id)

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        return await anyio.to_thread.run_sync(self.journal.known_runs, fingerprint, limit)

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        return await anyio.to_thread.run_sync(self.journal.is_known, fingerprint, run_id)
