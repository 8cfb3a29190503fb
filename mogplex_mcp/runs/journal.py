"""The start journal: a small SQLite file that de-duplicates retried starts and remembers known runs.

Hosts time out and models retry tool calls. A `start_run` identical to one made moments ago with the same
token must reuse that call's Idempotency-Key, so the upstream replays the first run instead of starting a
second paid one. Several server processes may share the file: every write is one short `BEGIN IMMEDIATE`
transaction (WAL, busy timeout), so the check-and-insert of a key is atomic across processes.

Only a fingerprint of the token is stored, never the token. When the file cannot be used the journal
falls back to an in-memory database: de-duplication then holds for this process only, and the server
keeps working.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from mogplex_mcp.runs.known_runs import (
    FACT_COLUMNS,
    RunFacts,
    RunsQuery,
    add_missing_columns,
    facts_from_row,
    facts_update,
    page_filter,
)

logger = logging.getLogger(__name__)

JOURNAL_FILE_NAME = "journal.sqlite3"
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MAX_RUNS = 200
TITLE_MAX_CHARS = 80
# Expired claims are kept a while past the window so a slow start can still attach its run id.
_CLAIM_RETENTION_SECONDS = 86_400.0
_BUSY_TIMEOUT_SECONDS = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS start_claims (
    fingerprint     TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_at      REAL NOT NULL,
    run_id          TEXT,
    PRIMARY KEY (fingerprint, request_hash)
);
CREATE INDEX IF NOT EXISTS start_claims_by_age ON start_claims (created_at);
CREATE TABLE IF NOT EXISTS known_runs (
    fingerprint TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    title       TEXT,
    status      TEXT,
    repo_id     TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    PRIMARY KEY (fingerprint, run_id)
);
CREATE INDEX IF NOT EXISTS known_runs_newest ON known_runs (fingerprint, first_seen);
"""

_T = TypeVar("_T")


def token_fingerprint(token: str) -> str:
    """Identify a token without storing it: the first 32 hex characters of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def request_fingerprint(base_url: str, body: Mapping[str, Any]) -> str:
    """Hash a start request: the upstream it goes to plus its wire body as canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # NUL cannot occur in a URL, so the boundary between the two parts is unambiguous.
    material = f"{base_url}\x00{canonical}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


def clean_title(text: str) -> str:
    """A one-line title: control and format characters dropped, whitespace collapsed, at most 80 chars."""
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    collapsed = " ".join(kept.split())
    if len(collapsed) <= TITLE_MAX_CHARS:
        return collapsed
    return collapsed[: TITLE_MAX_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class KeyClaim:
    """The Idempotency-Key to send for a start, and whether an earlier identical start already holds it."""

    idempotency_key: str
    reused: bool
    age_seconds: float
    run_id: str | None = None  # the run that earlier start produced, once recorded


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


_KNOWN_COLUMNS = "run_id, title, status, repo_id, first_seen, last_seen, rowid, " + ", ".join(FACT_COLUMNS)


def _known_run(row: tuple[Any, ...]) -> KnownRun:
    return KnownRun(row[0], row[1] or row[0], row[2], row[3], row[4], row[5], facts_from_row(row[7:]), row[6])


def _new_uuid_key() -> str:
    return str(uuid.uuid4())


def _is_storage_failure(exc: sqlite3.DatabaseError) -> bool:
    """Disk full, locked too long, corrupted: the file failed us. Misuse of the API is not this."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _create_private_file(path: Path) -> None:
    """Make the parent directory (0700) and the file (0600) before SQLite opens it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _connect(path: Path | None) -> sqlite3.Connection:
    """Open and prepare the database; raises OSError or sqlite3.DatabaseError when it cannot be used."""
    if path is not None:
        _create_private_file(path)
    target = ":memory:" if path is None else str(path)
    db = sqlite3.connect(target, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    try:
        if path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        # executescript would commit a transaction begun by execute(), so the script carries its own.
        db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        add_missing_columns(db)
    except BaseException:
        db.close()
        raise
    return db


class StartJournal:
    """De-duplicates identical starts per token and remembers known runs, in one SQLite file."""

    def __init__(
        self,
        path: Path | None,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_runs: int = DEFAULT_MAX_RUNS,
    ) -> None:
        self._window = max(0.0, window_seconds)
        self._clock = clock
        self._max_runs = max(1, max_runs)
        self._lock = threading.Lock()
        self.path: Path | None = path
        try:
            self._db = _connect(path)
        except (OSError, sqlite3.DatabaseError) as exc:
            logger.warning(
                "start journal %s is unusable (%s: %s); using memory instead — duplicate-start "
                "protection and the runs list will not survive a restart",
                path,
                type(exc).__name__,
                exc,
            )
            self.path = None
            self._db = _connect(None)

    @classmethod
    def in_state_dir(
        cls,
        state_dir: Path,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_runs: int = DEFAULT_MAX_RUNS,
    ) -> StartJournal:
        """The journal file in the user's state directory."""
        return cls(state_dir / JOURNAL_FILE_NAME, window_seconds=window_seconds, clock=clock, max_runs=max_runs)

    @property
    def persistent(self) -> bool:
        """False when running from memory (asked for, or fallen back to)."""
        return self.path is not None

    def claim_key(self, fingerprint: str, request_hash: str, new_key: Callable[[], str] = _new_uuid_key) -> KeyClaim:
        """Reuse the key of an identical start within the window, else record and return a fresh one."""
        if self._window <= 0:
            return KeyClaim(new_key(), reused=False, age_seconds=0.0)

        def claim(db: sqlite3.Connection) -> KeyClaim:
            now = self._clock()
            db.execute(
                "DELETE FROM start_claims WHERE created_at < ?",
                (now - max(self._window, _CLAIM_RETENTION_SECONDS),),
            )
            row = db.execute(
                "SELECT idempotency_key, created_at, run_id FROM start_claims"
                " WHERE fingerprint = ? AND request_hash = ?",
                (fingerprint, request_hash),
            ).fetchone()
            if row is not None and now - row[1] < self._window:
                return KeyClaim(row[0], reused=True, age_seconds=max(0.0, now - row[1]), run_id=row[2])
            key = new_key()
            db.execute(
                "INSERT OR REPLACE INTO start_claims"
                " (fingerprint, request_hash, idempotency_key, created_at, run_id) VALUES (?, ?, ?, ?, NULL)",
                (fingerprint, request_hash, key, now),
            )
            return KeyClaim(key, reused=False, age_seconds=0.0)

        return self._write("claim an idempotency key", claim, lambda: KeyClaim(new_key(), False, 0.0))

    def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        """Attach the run a claimed start produced, so a replayed claim can name it."""

        def record(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE start_claims SET run_id = ? WHERE fingerprint = ? AND request_hash = ?",
                (run_id, fingerprint, request_hash),
            )

        self._write("record a started run", record, lambda: None)

    def forget(self, fingerprint: str, request_hash: str) -> None:
        """Drop a claim whose start definitely failed, so the next identical start gets a fresh key."""

        def drop(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM start_claims WHERE fingerprint = ? AND request_hash = ?",
                (fingerprint, request_hash),
            )

        self._write("forget a start", drop, lambda: None)

    def remember_run(
        self,
        fingerprint: str,
        run_id: str,
        *,
        title: str | None = None,
        status: str | None = None,
        repo_id: str | None = None,
        facts: RunFacts | None = None,
    ) -> bool:
        """Upsert a run seen with this token; True when it was not known before (the list changed).

        `facts` fields that are None leave what is stored unchanged.
        """
        cleaned = clean_title(title) if title is not None else ""

        def upsert(db: sqlite3.Connection) -> bool:
            now = self._clock()
            known = db.execute(
                "SELECT 1 FROM known_runs WHERE fingerprint = ? AND run_id = ?", (fingerprint, run_id)
            ).fetchone()
            db.execute(
                "INSERT INTO known_runs"
                " (fingerprint, run_id, title, status, repo_id, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fingerprint, run_id) DO UPDATE SET"
                " title = COALESCE(excluded.title, title), status = COALESCE(excluded.status, status),"
                " repo_id = COALESCE(excluded.repo_id, repo_id), last_seen = excluded.last_seen",
                (fingerprint, run_id, cleaned or None, status, repo_id, now, now),
            )
            if facts is not None:
                self._store_facts(db, fingerprint, run_id, facts)
            if known is None:
                self._prune_runs(db, fingerprint)
            return known is None

        return self._write("remember a run", upsert, lambda: False)

    def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        """Runs seen with this token, most recently first seen first, at most `limit`."""
        if limit <= 0:
            return []

        def select(db: sqlite3.Connection) -> list[KnownRun]:
            rows = db.execute(
                "SELECT run_id, title, status, repo_id, first_seen, last_seen FROM known_runs"
                " WHERE fingerprint = ? ORDER BY first_seen DESC, rowid DESC LIMIT ?",
                (fingerprint, limit),
            ).fetchall()
            return [KnownRun(r[0], r[1] or r[0], r[2], r[3], r[4], r[5]) for r in rows]

        return self._read("list known runs", select, list)

    def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        """One page of the runs seen with this token, newest first (see RunsQuery)."""
        if query.limit <= 0:
            return []
        where, args = page_filter(query)
        # Only constant column names and "?" placeholders are interpolated (page_filter, _KNOWN_COLUMNS).
        sql = f"SELECT {_KNOWN_COLUMNS} FROM known_runs WHERE fingerprint = ? AND {where}"  # noqa: S608
        sql += " ORDER BY first_seen DESC, rowid DESC LIMIT ?"

        def select(db: sqlite3.Connection) -> list[KnownRun]:
            return [_known_run(row) for row in db.execute(sql, (fingerprint, *args, query.limit)).fetchall()]

        return self._read("list known runs", select, list)

    def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        """What this server knows of one run seen with this token, or None."""

        def select(db: sqlite3.Connection) -> KnownRun | None:
            row = db.execute(
                f"SELECT {_KNOWN_COLUMNS} FROM known_runs WHERE fingerprint = ? AND run_id = ?",  # noqa: S608
                (fingerprint, run_id),
            ).fetchone()
            return _known_run(row) if row is not None else None

        return self._read("look up a run", select, lambda: None)

    def is_known(self, fingerprint: str, run_id: str) -> bool:
        """Whether this server started or looked at the run with this token."""

        def select(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT 1 FROM known_runs WHERE fingerprint = ? AND run_id = ?", (fingerprint, run_id)
            ).fetchone()
            return row is not None

        return self._read("look up a run", select, lambda: False)

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> StartJournal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _store_facts(self, db: sqlite3.Connection, fingerprint: str, run_id: str, facts: RunFacts) -> None:
        assignments, values = facts_update(facts)
        if assignments:
            db.execute(
                f"UPDATE known_runs SET {assignments} WHERE fingerprint = ? AND run_id = ?",  # noqa: S608
                (*values, fingerprint, run_id),
            )

    def _prune_runs(self, db: sqlite3.Connection, fingerprint: str) -> None:
        db.execute(
            "DELETE FROM known_runs WHERE fingerprint = ? AND rowid NOT IN ("
            " SELECT rowid FROM known_runs WHERE fingerprint = ?"
            " ORDER BY first_seen DESC, rowid DESC LIMIT ?)",
            (fingerprint, fingerprint, self._max_runs),
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the write lock before the first read."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, what: str, work: Callable[[sqlite3.Connection], _T], degraded: Callable[[], _T]) -> _T:
        """Run `work` in a write transaction; if the file fails us, warn and answer `degraded()`."""
        try:
            with self._transaction() as db:
                return work(db)
        except sqlite3.DatabaseError as exc:
            if not _is_storage_failure(exc):
                raise
            self._warn(what, exc)
            return degraded()

    def _read(self, what: str, work: Callable[[sqlite3.Connection], _T], degraded: Callable[[], _T]) -> _T:
        try:
            with self._lock:
                return work(self._db)
        except sqlite3.DatabaseError as exc:
            if not _is_storage_failure(exc):
                raise
            self._warn(what, exc)
            return degraded()

    def _warn(self, what: str, exc: sqlite3.DatabaseError) -> None:
        logger.warning("start journal %s: could not %s (%s: %s)", self.path, what, type(exc).__name__, exc)
