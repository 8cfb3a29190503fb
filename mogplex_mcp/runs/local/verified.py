"""`VerifiedTokens` in the state directory: which token fingerprints upstream accepted, and when (SQLite).

So that after a restart or a deploy a known user does not start over in the queue of not-yet-accepted
tokens (api/limits.py). Only fingerprints and times are kept, never a token. Best effort: a full disk or a
locked file is logged and skipped, never an error for a caller.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

logger = logging.getLogger("mogplex_mcp.runs")

FILE_NAME = "verified-tokens.sqlite3"
MAX_KEPT = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verified (fingerprint TEXT PRIMARY KEY, accepted_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS verified_by_time ON verified (accepted_at);
"""


class LocalVerifiedTokens:
    """Acceptances kept in `<state dir>/verified-tokens.sqlite3`, each for `keep_seconds`, at most MAX_KEPT."""

    def __init__(
        self, path: Path, keep_seconds: float, *, max_kept: int = MAX_KEPT, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.max_kept = max_kept
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @classmethod
    def in_state_dir(cls, state_dir: Path, keep_seconds: float) -> LocalVerifiedTokens:
        return cls(state_dir / FILE_NAME, keep_seconds)

    async def record(self, fingerprint: str, accepted_at: float | None) -> None:
        """Upstream accepted the token at `accepted_at`; None: it refused it (a 401), forget it."""
        await anyio.to_thread.run_sync(self._record, fingerprint, accepted_at)

    async def recent(self, since: float, limit: int = MAX_KEPT) -> dict[str, float]:
        """Fingerprints accepted at or after `since` (and within `keep_seconds`), the newest `limit`."""
        return await anyio.to_thread.run_sync(self._recent, since, limit)

    async def accepted_at(self, fingerprint: str) -> float | None:
        return (await self.recent_of([fingerprint])).get(fingerprint)

    async def recent_of(self, fingerprints: list[str]) -> dict[str, float]:
        return await anyio.to_thread.run_sync(self._of, fingerprints)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=1.0, check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _record(self, fingerprint: str, accepted_at: float | None) -> None:
        try:
            with self._lock:
                db = self._connect()
                if accepted_at is None:
                    db.execute("DELETE FROM verified WHERE fingerprint = ?", (fingerprint,))
                    return
                db.execute(
                    "INSERT INTO verified VALUES (?, ?) ON CONFLICT(fingerprint) DO UPDATE SET accepted_at = "
                    "max(accepted_at, excluded.accepted_at)",
                    (fingerprint, accepted_at),
                )
                db.execute("DELETE FROM verified WHERE accepted_at < ?", (self._clock() - self.keep_seconds,))
                db.execute(
                    "DELETE FROM verified WHERE fingerprint NOT IN "
                    "(SELECT fingerprint FROM verified ORDER BY accepted_at DESC LIMIT ?)",
                    (self.max_kept,),
                )
        except (sqlite3.Error, OSError) as exc:
            logger.warning("could not record a verified token in %s: %s", self.path.name, exc)

    def _of(self, fingerprints: list[str]) -> dict[str, float]:
        oldest = self._clock() - self.keep_seconds
        marks = ",".join("?" * len(fingerprints))
        try:
            with self._lock:
                query = (
                    f"SELECT fingerprint, accepted_at FROM verified WHERE fingerprint IN ({marks}) AND accepted_at >= ?"  # noqa: S608 - placeholders only
                )
                rows = self._connect().execute(query, (*fingerprints, oldest))
                return {str(fingerprint): float(at) for fingerprint, at in rows}
        except (sqlite3.Error, OSError) as exc:
            logger.warning("could not read verified tokens from %s: %s", self.path.name, exc)
            return {}

    def _recent(self, since: float, limit: int) -> dict[str, float]:
        oldest = max(since, self._clock() - self.keep_seconds)
        try:
            with self._lock:
                rows = self._connect().execute(
                    "SELECT fingerprint, accepted_at FROM verified WHERE accepted_at >= ? "
                    "ORDER BY accepted_at DESC LIMIT ?",
                    (oldest, limit),
                )
                return {str(fingerprint): float(at) for fingerprint, at in rows}
        except (sqlite3.Error, OSError) as exc:
            logger.warning("could not read verified tokens from %s: %s", self.path.name, exc)
            return {}
