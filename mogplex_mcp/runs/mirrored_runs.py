"""`MirroredKnownRuns`: the runs list in a shared store, mirrored to this replica's journal for outages.

Every run seen is written to both: the shared store (Redis), so `resources/list` on any replica shows a
token's runs, and the local journal, as today. Reads come from the shared store; while it fails they come
from the journal (this replica's runs only), with one warning per outage, so reads never break; the store is
then asked again every few seconds, not on every call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mogplex_mcp.runs.store import KnownRun, KnownRuns, RunFacts, RunsQuery, StoreUnavailableError

logger = logging.getLogger("mogplex_mcp.runs")

# After a failure the shared store is asked again only this much later, so a hanging store (each command
# waits for its timeout) does not slow every read while it is down.
RETRY_SHARED_AFTER_SECONDS = 5.0


class MirroredKnownRuns:
    """`KnownRuns` on `shared`, with `local` written alongside and read while `shared` is down."""

    def __init__(self, shared: KnownRuns, local: KnownRuns, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.local = local
        self._clock = clock
        self._degraded = False
        self._retry_shared_at = 0.0

    @property
    def _resting(self) -> bool:
        """True while the store failed moments ago: answer locally without asking it."""
        return self._degraded and self._clock() < self._retry_shared_at

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
        new_here = await self.local.remember_run(
            fingerprint, run_id, title=title, status=status, repo_id=repo_id, facts=facts
        )
        if self._resting:
            return new_here
        try:
            new = await self.shared.remember_run(
                fingerprint, run_id, title=title, status=status, repo_id=repo_id, facts=facts
            )
        except StoreUnavailableError as exc:
            self._fell_back(exc)
            return new_here
        self._recovered()
        return new

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        if self._resting:
            return await self.local.known_runs(fingerprint, limit)
        try:
            runs = await self.shared.known_runs(fingerprint, limit)
        except StoreUnavailableError as exc:
            self._fell_back(exc)
            return await self.local.known_runs(fingerprint, limit)
        self._recovered()
        return runs

    async def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        if self._resting:
            return await self.local.runs_page(fingerprint, query)
        try:
            runs = await self.shared.runs_page(fingerprint, query)
        except StoreUnavailableError as exc:
            self._fell_back(exc)
            return await self.local.runs_page(fingerprint, query)
        self._recovered()
        return runs

    async def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        if self._resting:
            return await self.local.known_run(fingerprint, run_id)
        try:
            run = await self.shared.known_run(fingerprint, run_id)
        except StoreUnavailableError as exc:
            self._fell_back(exc)
            return await self.local.known_run(fingerprint, run_id)
        self._recovered()
        return run

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        if self._resting:
            return await self.local.is_known(fingerprint, run_id)
        try:
            known = await self.shared.is_known(fingerprint, run_id)
        except StoreUnavailableError as exc:
            self._fell_back(exc)
            return await self.local.is_known(fingerprint, run_id)
        self._recovered()
        return known

    def _fell_back(self, exc: StoreUnavailableError) -> None:
        self._retry_shared_at = self._clock() + RETRY_SHARED_AFTER_SECONDS
        if not self._degraded:
            logger.warning("the runs list falls back to this replica's journal: %s", exc)
            self._degraded = True

    def _recovered(self) -> None:
        if self._degraded:
            logger.warning("the runs list is shared again (the store answers)")
            self._degraded = False
