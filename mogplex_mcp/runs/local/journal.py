"""The start journal: a small SQLite file that de-duplicates retried starts and remembers known runs.

Hosts time out and models retry tool calls. A `start_run` identical to one made moments ago with the same
token must reuse that call's Idempotency-Key, so the upstream replays the first run instead of starting a
second paid one. Several server processes may share the file: every write is one short `BEGIN IMMEDIATE`
transaction (WAL, bounded busy wait), so the check-and-insert of a key is atomic across processes.

When the file cannot be written (disk full, locked by another process, read-only), a claim falls back to
an in-process table after checking the file for an earlier claim; when the file cannot even be read, and
this process has no claim of its own, `claim_key` raises `JournalUnavailableError` rather than hand out a
fresh key that could start a second run. Bookkeeping (`remember_run`) never waits behind a stuck writer.
A list that cannot be read raises `RunsUnreadable` (never an empty list); a damaged file is replaced by
`journal_file` (see `journal_heal`).

Only fingerprints are stored: of the token (SHA-256), and of each start request (an HMAC keyed by the
token, so a guessable prompt cannot be confirmed from the file). Titles arrive redacted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from mogplex_mcp.runs.fingerprints import TITLE_MAX_CHARS as TITLE_MAX_CHARS
from mogplex_mcp.runs.fingerprints import clean_title as clean_title
from mogplex_mcp.runs.fingerprints import request_fingerprint as request_fingerprint
from mogplex_mcp.runs.fingerprints import token_fingerprint as token_fingerprint
from mogplex_mcp.runs.local.claim_rows import (
    attach_run,
    drop_claim,
    drop_claims_before,
    insert_claim,
    select_claim,
    write_through,
)
from mogplex_mcp.runs.local.journal_file import (
    RETRY_WRITES_AFTER_SECONDS,
    EmptyJournal,
    JournalDamaged,
    JournalFile,
    JournalStorageError,
)
from mogplex_mcp.runs.local.known_runs import (
    is_known_in,
    prune_runs,
    select_page,
    select_recent,
    select_run,
    store_facts,
    upsert_run,
)
from mogplex_mcp.runs.local.memory_claims import ClaimId, ClaimTable, MemoryClaim
from mogplex_mcp.runs.store import (
    DEFAULT_MAX_RUNS,
    DEFAULT_WINDOW_SECONDS,
    KeyClaim,
    KnownRun,
    RunFacts,
    RunsQuery,
    RunsUnreadable,
    StartClaimsUnavailableError,
)
from mogplex_mcp.telemetry import hooks

logger = logging.getLogger("mogplex_mcp.runs.journal")

JOURNAL_FILE_NAME = "journal.sqlite3"
# Expired claims are kept a while past the window so a slow start can still attach its run id.
_CLAIM_RETENTION_SECONDS = 86_400.0
# How long a claim waits for the file's write lock before falling back to the in-process table.
DEFAULT_WAIT_SECONDS = 2.0
# Bookkeeping on read paths waits at most this long, and not at all behind this process's own writer.
BOOKKEEPING_WAIT_SECONDS = 0.1
# Reads take milliseconds (WAL readers never wait for writers); this only bounds queueing in this process.
_READ_WAIT_SECONDS = 2.0


class JournalUnavailableError(StartClaimsUnavailableError):
    """No key can be vouched for: the file cannot be read and this process holds no claim for the request."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _new_uuid_key() -> str:
    return str(uuid.uuid4())


class StartJournal:
    """De-duplicates identical starts per token and remembers known runs, in one SQLite file."""

    def __init__(
        self,
        path: Path | None,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_runs: int = DEFAULT_MAX_RUNS,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        hold_off_seconds: float = RETRY_WRITES_AFTER_SECONDS,
    ) -> None:
        """`hold_off_seconds`: after a claim's write fails, writes fail at once for this long."""
        self._window = max(0.0, window_seconds)
        self._clock = clock
        self._max_runs = max(1, max_runs)
        self._wait = max(0.0, wait_seconds)
        self._read_wait = max(self._wait, _READ_WAIT_SECONDS)
        self._file = JournalFile(path, retry_writes_after=hold_off_seconds)
        self._claims = ClaimTable(self._window)
        self._failing = False
        self._counter_lock = threading.Lock()
        self.skipped_bookkeeping = 0  # remember_run calls given up (file busy or failing): read paths went on
        self._migrated = False

    @classmethod
    def in_state_dir(
        cls,
        state_dir: Path,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_runs: int = DEFAULT_MAX_RUNS,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> StartJournal:
        """The journal file in the user's state directory."""
        return cls(
            state_dir / JOURNAL_FILE_NAME,
            window_seconds=window_seconds,
            clock=clock,
            max_runs=max_runs,
            wait_seconds=wait_seconds,
        )

    @property
    def path(self) -> Path | None:
        return self._file.path

    @property
    def persistent(self) -> bool:
        """False when running from memory (asked for, or the file cannot exist)."""
        return self._file.persistent

    @property
    def claims_in_memory(self) -> int:
        """Claims this process holds because the file could not take them (or could not be trusted)."""
        return len(self._claims)

    def problem(self) -> str | None:
        """Why the file cannot take a write right now (None: it can, or the journal runs from memory).

        For readiness probes: an empty write transaction, waiting briefly for a lock, never while this process
        is writing (that write is the answer), and tried even while claims' writes are held off after a failure.
        """
        try:
            self._file.write(lambda db: None, BOOKKEEPING_WAIT_SECONDS, blocking=False, force=True)
        except JournalStorageError as failure:
            if failure.reason.startswith("the journal is busy"):
                return None
            return f"the start journal cannot be written: {failure.reason}"
        return None

    def claim_key(self, fingerprint: str, request_hash: str, new_key: Callable[[], str] = _new_uuid_key) -> KeyClaim:
        """Reuse the key of an identical start within the window, else record and return a fresh one.

        Raises JournalUnavailableError when neither the file nor this process can vouch for a fresh key.
        """
        if self._window <= 0:
            return KeyClaim(new_key(), reused=False, age_seconds=0.0)
        claim_id = (fingerprint, request_hash)
        with self._claims.serialized(claim_id):
            now = self._clock()
            held = self._claims.live(claim_id, now)
            if held is not None:  # first: a key handed out during an outage is reused after it, too
                age = max(0.0, now - held.created_at)
                return KeyClaim(held.idempotency_key, True, age, held.run_id, durable=held.persisted)
            try:
                return self._claim_in_file(claim_id, now, new_key)
            except JournalStorageError as failure:
                try:
                    claim = self._claim_in_memory(claim_id, now, new_key, failure.reason)
                except JournalUnavailableError:
                    self._note_failure("claim an idempotency key", failure, _REFUSING)
                    raise
                self._note_failure("claim an idempotency key", failure, _IN_MEMORY)
                return claim

    def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        """Attach the run a claimed start produced, so a replayed claim can name it."""
        self._claims.attach_run((fingerprint, request_hash), run_id)

        claim_id = (fingerprint, request_hash)
        self._best_effort("record a started run", lambda db: attach_run(db, claim_id, run_id), self._wait)

    def forget(self, fingerprint: str, request_hash: str) -> None:
        """Drop a claim whose start definitely failed, so the next identical start gets a fresh key."""
        self._claims.drop((fingerprint, request_hash), self._clock())

        claim_id = (fingerprint, request_hash)
        self._best_effort("forget a start", lambda db: drop_claim(db, claim_id), self._wait)

    def remember_run(
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

        Best-effort and bounded: skipped (None, counted in `skipped_bookkeeping`) when the file is busy
        or failing, so a read path never waits behind a stuck writer. `facts` left None stay as stored.
        """
        cleaned = clean_title(title) if title is not None else ""
        pending = self._claims.unpersisted(self._clock())

        def upsert(db: sqlite3.Connection) -> bool:
            write_through(db, pending)  # claims held during an outage reach the file with the first write
            new = upsert_run(db, (fingerprint, run_id), (cleaned or None, status, repo_id), self._clock())
            if facts is not None:
                store_facts(db, (fingerprint, run_id), facts)
            if new:
                prune_runs(db, fingerprint, self._max_runs)
            return new

        try:
            new = self._file.write(upsert, BOOKKEEPING_WAIT_SECONDS, blocking=False)
        except JournalStorageError as failure:
            with self._counter_lock:
                self.skipped_bookkeeping += 1
            logger.debug("start journal: skipped remembering run %s (%s)", run_id, failure.reason)
            return None
        self._claims.mark_persisted([claim_id for claim_id, _ in pending])
        return new

    def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        """Runs seen with this token, most recently first seen first, at most `limit`.

        Raises RunsUnreadable when the file cannot be read (an unreadable list is not an empty one).
        """
        if limit <= 0:
            return []

        return self._read_list("list known runs", lambda db: select_recent(db, fingerprint, limit))

    def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        """One page of the runs seen with this token, newest first (see RunsQuery); RunsUnreadable as above."""
        if query.limit <= 0:
            return []
        self._migrate_once()
        return self._read_list("list known runs", lambda db: select_page(db, fingerprint, query))

    def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        """What this server knows of one run seen with this token, or None."""
        self._migrate_once()
        return self._read_or("look up a run", lambda db: select_run(db, fingerprint, run_id), None)

    def is_known(self, fingerprint: str, run_id: str) -> bool:
        """Whether this server started or looked at the run with this token."""

        return self._read_or("look up a run", lambda db: is_known_in(db, fingerprint, run_id), False)

    def close(self) -> None:
        """Write through claims held in memory (if the file takes them now), then close; safe to call twice."""
        pending = self._claims.unpersisted(self._clock())
        if pending:

            def flush(db: sqlite3.Connection) -> None:
                write_through(db, pending)

            try:
                self._file.write(flush, self._wait, force=True)
            except JournalStorageError as failure:
                logger.warning(
                    "start journal %s: %d start claim(s) held in memory are lost at exit (%s)",
                    self.path,
                    len(pending),
                    failure.reason,
                )
        self._file.close()

    def __enter__(self) -> StartJournal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _claim_in_file(self, claim_id: ClaimId, now: float, new_key: Callable[[], str]) -> KeyClaim:
        """The atomic check-and-insert in the file; also writes through claims made during an outage."""
        pending = self._claims.unpersisted(now)

        def claim(db: sqlite3.Connection) -> KeyClaim:
            drop_claims_before(db, now - max(self._window, _CLAIM_RETENTION_SECONDS))
            write_through(db, pending)
            row = select_claim(db, claim_id)
            if row is not None and self._is_live(claim_id, row[1], now):
                return KeyClaim(row[0], reused=True, age_seconds=max(0.0, now - row[1]), run_id=row[2])
            key = new_key()
            insert_claim(db, claim_id, key, now)
            return KeyClaim(key, reused=False, age_seconds=0.0)

        result = self._file.write(claim, self._wait)
        self._claims.mark_persisted([claim_id for claim_id, _ in pending])
        self._note_recovery()
        return result

    def _claim_in_memory(self, claim_id: ClaimId, now: float, new_key: Callable[[], str], why: str) -> KeyClaim:
        """The file cannot be written: reuse a claim it still shows, else hold a new one in this process."""
        try:
            row = self._file.read(lambda db: select_claim(db, claim_id), self._read_wait)
        except EmptyJournal:
            row = None
        except JournalStorageError as failure:
            read = "" if failure.reason == why else f"; reading it failed too ({failure.reason})"
            raise JournalUnavailableError(f"{why}{read}") from None
        if row is not None and self._is_live(claim_id, row[1], now):
            self._claims.put(claim_id, MemoryClaim(row[0], row[1], row[2], persisted=True), now)
            return KeyClaim(row[0], reused=True, age_seconds=max(0.0, now - row[1]), run_id=row[2])
        key = new_key()
        self._claims.put(claim_id, MemoryClaim(key, now), now)
        return KeyClaim(key, reused=False, age_seconds=0.0, durable=False)

    def _is_live(self, claim_id: ClaimId, created_at: float, now: float) -> bool:
        return now - created_at < self._window and not self._claims.is_stale(claim_id, created_at)

    def _best_effort(self, what: str, work: Callable[[sqlite3.Connection], None], wait: float) -> None:
        try:
            self._file.write(work, wait)
        except JournalStorageError as failure:
            self._note_failure(what, failure, _IN_MEMORY)

    def _read_or(self, what: str, work: Callable[[sqlite3.Connection], _T], fallback: _T) -> _T:
        try:
            return self._file.read(work, self._read_wait)
        except EmptyJournal:
            return fallback
        except JournalStorageError as failure:
            self._note_failure(what, failure, "a run's remembered details are left out until it can be read")
            return fallback

    def _read_list(self, what: str, work: Callable[[sqlite3.Connection], list[KnownRun]]) -> list[KnownRun]:
        try:
            return self._file.read(work, self._read_wait)
        except EmptyJournal:
            return []
        except JournalStorageError as failure:
            self._note_failure(what, failure, "the runs list is reported as unreadable until it can be read")
            raise RunsUnreadable(failure.reason) from None

    def _migrate_once(self) -> None:
        """A file from an older version gains the fact columns with its first write; reads need them first."""
        if self._migrated:
            return
        try:
            self._file.write(lambda db: None, BOOKKEEPING_WAIT_SECONDS, blocking=False)
        except JournalStorageError:
            return  # the read then fails over to its fallback, and the next call tries again
        self._migrated = True

    def _note_failure(self, what: str, failure: JournalStorageError, meanwhile: str) -> None:
        """Warn once when the file starts failing, saying what happens meanwhile; then quietly, until it works."""
        if meanwhile is not _REFUSING:  # every fallback is counted (docs/operations.md); a refusal is no fallback
            hooks.recorder().journal_fallback(what)
        # A damaged file has said so itself, with what happens meanwhile: one warning, not two.
        level = logging.DEBUG if self._failing or isinstance(failure, JournalDamaged) else logging.WARNING
        self._failing = True
        logger.log(level, "start journal %s: could not %s (%s); %s", self.path, what, failure.reason, meanwhile)

    def _note_recovery(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("start journal %s works again", self.path)


_T = TypeVar("_T")

_IN_MEMORY = "start claims are held in this process until it works again (other processes cannot see them)"
_REFUSING = (
    "it cannot be read either, so a start without idempotencyKey is refused (nothing is sent) unless this "
    "process already holds its claim"
)
