"""The start journal's SQLite file: opened read-write (else read-only), its schema, bounded transactions.

Every use waits a bounded time: for this process's own connection lock and for SQLite's busy handler.
Writes go through one connection and reads through another, so a read never queues behind a write
stuck on another process's lock (WAL readers do not wait for writers). After a write fails, further
writes fail at once for `retry_writes_after` seconds instead of each waiting out the busy timeout.

The file is never opened outside SQLite while this process may be connected (that drops SQLite's locks,
see `journal_heal.prepare_file`). A damaged file (quick_check on the first connection, SQLITE_CORRUPT or
NOTADB on any statement) is replaced by `journal_heal.replace_damaged` and the call retried once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mogplex_mcp.runs.local.journal_heal import (
    CannotExist,
    damage_of,
    is_damage,
    prepare_file,
    replace_damaged,
    side_lock,
)
from mogplex_mcp.runs.local.known_runs import add_missing_columns

logger = logging.getLogger("mogplex_mcp.runs.journal")

RETRY_WRITES_AFTER_SECONDS = 2.0
# Longest wait for the side lock (opening a connection, replacing a damaged file) and this process's locks.
_HEAL_WAIT_SECONDS = 1.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS start_claims (
    fingerprint     TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_at      REAL NOT NULL,
    run_id          TEXT,
    PRIMARY KEY (fingerprint, request_hash))""",
    "CREATE INDEX IF NOT EXISTS start_claims_by_age ON start_claims (created_at)",
    """CREATE TABLE IF NOT EXISTS known_runs (
    fingerprint TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    title       TEXT,
    status      TEXT,
    repo_id     TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    PRIMARY KEY (fingerprint, run_id))""",
    "CREATE INDEX IF NOT EXISTS known_runs_newest ON known_runs (fingerprint, first_seen)",
)
_TABLES = ("start_claims", "known_runs")

_T = TypeVar("_T")


class JournalStorageError(Exception):
    """The file could not be used for this operation; `reason` says why in words a user knows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JournalDamaged(JournalStorageError):
    """The file's bytes are wrong (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed quick_check)."""


def describe(exc: BaseException) -> str:
    """A storage failure in a user's words."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "the file is locked by another process"
    if name == "SQLITE_FULL" or "disk is full" in text:
        return "the disk is full"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return "the file is read-only"
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
        return "the file is damaged (not a readable SQLite database)"
    if name.startswith("SQLITE_IOERR") or "I/O error" in text:
        return "a disk I/O error"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return text or type(exc).__name__


def is_storage_failure(exc: sqlite3.DatabaseError) -> bool:
    """Disk full, locked too long, corrupted: the file failed us. Misuse of the API is not this."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _open(path: Path | None) -> sqlite3.Connection:
    target = ":memory:" if path is None else str(path)
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    if path is not None:
        try:
            db.execute("PRAGMA busy_timeout = 2000")
            db.execute("PRAGMA journal_mode=WAL")  # a no-op read when it already is WAL
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            if not is_storage_failure(exc):
                db.close()
                raise
    return db


class JournalFile:
    """One SQLite database (a file, or memory when `path` is None) used with bounded waits."""

    def __init__(self, path: Path | None, *, retry_writes_after: float = RETRY_WRITES_AFTER_SECONDS) -> None:
        self.path = path
        self._retry_after = retry_writes_after
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._schema_ready = False
        self._writes_resume_at = 0.0
        self._last_failure = ""
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checked = False  # quick_check passed on this file since it was opened (or replaced)
        self.damage: str | None = None  # the file is damaged and not replaced yet: why
        self._heal_at = 0.0
        self._heal_note = ""
        try:
            self._connect()
        except JournalDamaged:
            self._heal()
        except CannotExist as exc:
            logger.warning(
                "start journal %s cannot be created (%s); using memory instead — the runs list and "
                "duplicate-start protection will not survive a restart",
                path,
                exc,
            )
            self.path = None
            self._connect()
        except (OSError, sqlite3.DatabaseError, JournalStorageError) as exc:
            self._note_failure(describe(exc))
            logger.warning("start journal %s cannot be opened (%s); will retry", path, self._last_failure)

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def write(
        self, work: Callable[[sqlite3.Connection], _T], wait: float, *, blocking: bool = True, force: bool = False
    ) -> _T:
        """Run `work` in one BEGIN IMMEDIATE transaction, waiting at most `wait` seconds for locks.

        `blocking=False`: give up at once if this process is already writing. `force`: try even while
        writes are held off after a failure. A damaged file is replaced (when it can be) and `work` retried.
        """
        try:
            return self._write_once(work, wait, blocking=blocking, force=force)
        except JournalDamaged:
            if not self._heal():
                raise JournalDamaged(self.damage_reason) from None
            return self._write_once(work, wait, blocking=blocking, force=force)

    def _write_once(self, work: Callable[[sqlite3.Connection], _T], wait: float, *, blocking: bool, force: bool) -> _T:
        if self.damage is not None and not self._heal():
            raise JournalDamaged(self.damage_reason)
        if not force and time.monotonic() < self._writes_resume_at:
            raise JournalStorageError(self._last_failure)
        started = time.monotonic()
        if not self._write_lock.acquire(blocking=blocking, timeout=wait if blocking else -1):
            raise JournalStorageError("the journal is busy with another write in this process")
        try:
            try:
                db = self._writer_connection()
            except JournalStorageError as exc:
                self._note_failure(exc.reason)
                raise
            db.execute(f"PRAGMA busy_timeout = {_millis(wait - (time.monotonic() - started))}")
            db.execute("BEGIN IMMEDIATE")
            try:
                if not self._schema_ready:
                    _create_schema(db)
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._schema_ready = True
            self._writes_resume_at = 0.0
            return result
        except sqlite3.DatabaseError as exc:
            if not is_storage_failure(exc):
                raise
            if is_damage(exc):
                raise self._found_damage(str(exc)) from None
            raise self._write_failed(describe(exc), held_off=blocking) from None
        finally:
            self._write_lock.release()

    def _write_failed(self, reason: str, *, held_off: bool) -> JournalStorageError:
        """Bookkeeping gives up quietly; a claim's failure also holds further writes off for a while."""
        if held_off:
            self._note_failure(reason)
            if not reason.startswith(("the file is locked", "the disk is full")):
                self._drop_writer()  # a read-only or damaged file may be fixed: open it afresh next time
        return JournalStorageError(reason)

    def _drop_writer(self) -> None:
        if self._writer is not None and self.path is not None:
            self._writer.close()
            self._writer = None

    def read(self, work: Callable[[sqlite3.Connection], _T], wait: float) -> _T:
        """Run `work` on the reading connection, waiting at most `wait` seconds; no table yet reads as empty."""
        if self.path is None:  # one in-memory database: reads share the writer's connection and lock
            return self._read_on(self._write_lock, self._writer_connection, work, wait)
        if self.damage is not None and not self._heal():
            raise JournalDamaged(self.damage_reason)
        try:
            return self._read_on(self._read_lock, self._reader_connection, work, wait)
        except JournalDamaged:
            if not self._heal():
                raise JournalDamaged(self.damage_reason) from None
            return self._read_on(self._read_lock, self._reader_connection, work, wait)

    @property
    def damage_reason(self) -> str:
        """The damage in a user's words, and what happens next."""
        return f"the file is damaged ({self.damage}); {self._heal_note}"

    def close(self) -> None:
        for lock, name in ((self._write_lock, "_writer"), (self._read_lock, "_reader")):
            with lock:
                db = getattr(self, name)
                if db is not None:
                    db.close()
                    setattr(self, name, None)

    def _read_on(
        self,
        lock: threading.Lock,
        connection: Callable[[], sqlite3.Connection],
        work: Callable[[sqlite3.Connection], _T],
        wait: float,
    ) -> _T:
        if not lock.acquire(timeout=wait):
            raise JournalStorageError("the journal is busy in this process")
        try:
            db = connection()
            db.execute(f"PRAGMA busy_timeout = {_millis(wait)}")
            return work(db)
        except sqlite3.DatabaseError as exc:
            if not is_storage_failure(exc):
                raise
            if str(exc).startswith("no such table"):  # a new file whose schema a locked writer held off
                raise EmptyJournal from None
            if is_damage(exc):
                raise self._found_damage(str(exc)) from None
            raise JournalStorageError(describe(exc)) from None
        finally:
            lock.release()

    def _connect(self) -> None:
        self._writer = self._open_checked()
        self._reader = self._open_checked() if self.path is not None else None

    def _open_checked(self) -> sqlite3.Connection:
        if self.path is None:
            return _open(None)
        prepare_file(self.path)
        # Held shared until the connection's first read holds SQLite's lock: a healer never moves a file
        # while a process is between opening it and locking it.
        with side_lock(self.path, exclusive=False, wait=_HEAL_WAIT_SECONDS) as held:
            if held is False:
                raise JournalStorageError("the journal is busy: another process is replacing a damaged file")
            db = _open(self.path)
            if not self._checked:
                try:
                    damage = damage_of(db)
                except sqlite3.DatabaseError:
                    damage = None  # locked or busy: the check runs with the next connection
                else:
                    self._checked = damage is None
                if damage is not None:
                    db.close()
                    raise self._found_damage(damage)
        return db

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._reopen()
        return self._writer

    def _reader_connection(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = self._reopen()
        return self._reader

    def _reopen(self) -> sqlite3.Connection:
        try:
            return self._open_checked()
        except (CannotExist, OSError) as exc:
            raise JournalStorageError(describe(exc)) from None

    def _note_failure(self, reason: str) -> None:
        self._last_failure = reason
        self._writes_resume_at = time.monotonic() + self._retry_after

    def _found_damage(self, damage: str) -> JournalDamaged:
        """Remember the damage; the connections go (caller holds at most one lock: close the other later)."""
        if self.damage is None:
            logger.info("start journal %s is damaged (%s); replacing it", self.path, damage)
        self.damage = damage
        self._checked = False
        self._heal_note = "it is being replaced"
        return JournalDamaged(f"the file is damaged ({damage})")

    def _heal(self) -> bool:
        """Replace the damaged file when no other process has it open; True when the path reads whole now.

        Tried at most once per `retry_writes_after` seconds; waits a bounded time for this process's locks.
        """
        if self.path is None or self.damage is None:
            return self.damage is None
        if time.monotonic() < self._heal_at:
            return False
        self._heal_at = time.monotonic() + self._retry_after
        if not self._write_lock.acquire(timeout=_HEAL_WAIT_SECONDS):
            return False
        try:
            if not self._read_lock.acquire(timeout=_HEAL_WAIT_SECONDS):
                return False
            try:
                return self.damage is None or self._heal_locked(self.path)  # another thread may have healed it
            finally:
                self._read_lock.release()
        finally:
            self._write_lock.release()

    def _heal_locked(self, path: Path) -> bool:
        for name in ("_writer", "_reader"):  # no connection of ours may stay open while the file is looked at
            db = getattr(self, name)
            if db is not None:
                db.close()
                setattr(self, name, None)
        damage = self.damage
        outcome = replace_damaged(path, lambda: self._fresh(path), _create_schema, _TABLES, _HEAL_WAIT_SECONDS)
        if not outcome.healthy:
            if self._heal_note != outcome.why:
                logger.warning(
                    "start journal %s is damaged (%s) and cannot be replaced yet: %s. Until then a start "
                    "without idempotencyKey is refused (nothing is sent) unless this process already holds its "
                    "claim, and the runs list is reported as unreadable",
                    path,
                    damage,
                    outcome.why,
                )
            self._heal_note = outcome.why
            return False
        if outcome.aside is not None:
            logger.warning(
                "start journal %s was damaged (%s): moved it to %s (kept for you; delete it when done) and "
                "started a new file with the %d row(s) it still held; recent start claims and listed runs it "
                "no longer held are gone",
                path,
                damage,
                outcome.aside,
                outcome.restored,
            )
        self.damage = None
        self._schema_ready = False
        self._writes_resume_at = 0.0
        return True

    @staticmethod
    def _fresh(path: Path) -> sqlite3.Connection:
        prepare_file(path)
        return _open(path)


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        db.execute(statement)
    add_missing_columns(db)  # known_runs' newer columns, on a file an older version wrote


class EmptyJournal(Exception):
    """The file has no tables yet: it holds no claims and no runs."""


def _millis(seconds: float) -> int:
    return max(0, int(seconds * 1000))
