"""`GrantStore` on SQLite: its own file in the state dir (`oauth-grants.sqlite3`, mode 0600), beside the journal.

Separate from the start journal on purpose: grants have their own lifecycle (a user signs in again when it is
lost) and their own failure modes. Expired rows are ignored on read and swept on write.

The event loop never waits on the file: another process holding its write lock (a `grants` command, a
backup) makes *that* caller wait, at most `busy_seconds` in all, then get a StoreUnavailableError saying to
retry; every other request of the server goes on meanwhile. Writes run in a worker thread. Reads and writes
have their own connection (WAL: a reader never waits for a writer), each used by one thread at a time, and
the threads come from this store's own small limiter, so a stuck file cannot use up the threads the start
journal needs. Point lookups by key (every request authorised by an access token makes two) are first tried
on the loop with no busy wait at all, and go to a thread only when the file is busy even for readers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import TypeVar

import anyio

from mogplex_mcp.runs.grant_store import (
    Grant,
    IssuedCode,
    IssuedToken,
    dump,
    load_code,
    load_grant,
    load_token,
)
from mogplex_mcp.runs.local.journal_heal import CannotExist, prepare_file
from mogplex_mcp.runs.store import StoreUnavailableError

FILE_NAME = "oauth-grants.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS codes (hash TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, body TEXT NOT NULL,"
    " expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS grants_by_fingerprint ON grants (fingerprint)",
    "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, used INTEGER NOT NULL,"
    " body TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens (expires_at)",
)
# Sweep expired rows every this many writes (cheap, indexed), so the file stays the size of live grants.
_SWEEP_EVERY = 64
# Ids per `IN (...)` query and grants per page of `grants()`: well under SQLite's variable limit.
_BATCH = 500
_MIN_WAIT_MS = 1

_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]


class LocalGrantStore:
    """Grants in one SQLite file; several handles (processes) on one file see each other's writes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, busy_seconds: float = 2.0) -> None:
        self.path = path
        self._clock = clock
        self._busy = busy_seconds
        try:
            prepare_file(path)  # created 0600 (O_EXCL) before any connection; an existing file never opened here
        except CannotExist as exc:
            raise StoreUnavailableError(f"the grant store {path} cannot be created ({exc})") from None
        self._writer = self._connect()
        self._reader = self._connect()
        with _errors(path, "open the grant store"):
            self._writer.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._writer.execute(statement)
        # One thread at a time per connection, waited for on the loop (bounded), never in a thread.
        self._write_turn = anyio.Lock()
        self._read_turn = anyio.Lock()
        self._threads = anyio.CapacityLimiter(2)
        self._writes = 0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self._busy, isolation_level=None, check_same_thread=False)

    @classmethod
    def in_state_dir(cls, state_dir: Path, **kwargs: float) -> LocalGrantStore:
        return cls(state_dir / FILE_NAME, **kwargs)  # type: ignore[arg-type]

    def now(self) -> float:
        return self._clock()

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    async def save_code(self, code_hash: str, code: IssuedCode) -> None:
        await self._write(
            "save a code", "INSERT OR REPLACE INTO codes VALUES (?, ?, ?)", (code_hash, dump(code), code.expires_at)
        )

    async def take_code(self, code_hash: str) -> IssuedCode | None:
        def take(db: sqlite3.Connection) -> tuple[str] | None:
            sql = "DELETE FROM codes WHERE hash = ? AND expires_at > ? RETURNING body"
            row: tuple[str] | None = db.execute(sql, (code_hash, self.now())).fetchone()
            return row

        row = await self._writing("take an authorization code", take)
        return load_code(row[0]) if row else None

    async def save_grant(self, grant: Grant) -> None:
        values = (grant.grant_id, grant.fingerprint, dump(grant), grant.expires_at)
        await self._write("save a grant", "INSERT OR REPLACE INTO grants VALUES (?, ?, ?, ?)", values)

    async def grant(self, grant_id: str) -> Grant | None:
        row = await self._read("SELECT body FROM grants WHERE id = ? AND expires_at > ?", (grant_id, self.now()))
        return load_grant(row[0]) if row else None

    async def drop_grant(self, grant_id: str) -> bool:
        def drop(db: sqlite3.Connection) -> bool:
            dropped = db.execute("DELETE FROM grants WHERE id = ?", (grant_id,)).rowcount
            db.execute("DELETE FROM tokens WHERE grant_id = ?", (grant_id,))
            return dropped > 0

        return await self._writing("drop a grant", drop, transaction=True)

    async def drop_grants_of(self, fingerprint: str) -> list[str]:
        def drop(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("DELETE FROM grants WHERE fingerprint = ? RETURNING id", (fingerprint,)).fetchall()
            ids = [str(row[0]) for row in rows]
            for grant_id in ids:
                db.execute("DELETE FROM tokens WHERE grant_id = ?", (grant_id,))
            return ids

        return await self._writing("drop a token's grants", drop, transaction=True)

    async def live_grant_ids(self, grant_ids: Collection[str]) -> set[str]:
        wanted, now = list(grant_ids), self.now()

        def check(db: sqlite3.Connection) -> set[str]:
            live = set[str]()
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                sql = f"SELECT id FROM grants WHERE expires_at > ? AND id IN ({marks})"  # noqa: S608 - only marks
                live.update(str(row[0]) for row in db.execute(sql, (now, *batch)))
            return live

        return await self._reading("check grants", check)

    async def grants(self) -> AsyncIterator[Grant]:
        after = ""
        while True:  # keyset pages: a long listing never holds a read transaction open
            sql = "SELECT id, body FROM grants WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?"
            values = (after, self.now(), _BATCH)

            def page(
                db: sqlite3.Connection, sql: str = sql, values: tuple[object, ...] = values
            ) -> list[tuple[str, str]]:
                return list(db.execute(sql, values).fetchall())

            rows = await self._reading("list grants", page)
            for row in rows:
                yield load_grant(row[1])
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    async def save_token(self, token_hash: str, token: IssuedToken) -> None:
        values = (token_hash, token.grant_id, dump(token), token.expires_at)
        await self._write("save a token", "INSERT OR REPLACE INTO tokens VALUES (?, ?, 0, ?, ?)", values)

    async def token(self, token_hash: str) -> IssuedToken | None:
        row = await self._read("SELECT body FROM tokens WHERE hash = ? AND expires_at > ?", (token_hash, self.now()))
        return load_token(row[0]) if row else None

    async def spend_refresh(self, token_hash: str) -> tuple[IssuedToken, bool] | None:
        def spend(db: sqlite3.Connection) -> tuple[str, int] | None:
            sql = "UPDATE tokens SET used = used + 1 WHERE hash = ? AND expires_at > ? RETURNING body, used"
            found: tuple[str, int] | None = db.execute(sql, (token_hash, self.now())).fetchone()
            return found

        row = await self._writing("use a refresh token", spend)
        if row is None:
            return None
        return load_token(row[0]), row[1] == 1

    async def _read(self, sql: str, values: tuple[object, ...]) -> tuple[str] | None:
        """One row by its key: the lookups of every request authorised by an access token.

        Tried first right here without waiting at all (SQLite's busy wait 0): in WAL a reader never waits for a
        writer, so this is a lookup in pages the OS has cached, cheaper than the thread hop (measured: two hops
        per request tripled the in-process cost of resolving a token). Only when the file is busy even for
        readers (another process recovering it) does the read go to a worker thread and wait there, bounded.
        """

        def one(db: sqlite3.Connection) -> tuple[str] | None:
            row: tuple[str] | None = db.execute(sql, values).fetchone()
            return row

        if not self._read_turn.locked():  # no thread is using the reader (nothing awaits between here and use)
            try:
                self._reader.execute("PRAGMA busy_timeout = 0")
                return one(self._reader)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreUnavailableError(_failed_message(self.path, "read the grant store", exc)) from None
        return await self._reading("read the grant store", one)

    async def _write(self, what: str, sql: str, values: tuple[object, ...]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(sql, values)

        await self._writing(what, write)

    async def _reading(self, what: str, work: Work[_T]) -> _T:
        return await self._off_loop(self._read_turn, self._reader, what, work, transaction=False)

    async def _writing(self, what: str, work: Work[_T], *, transaction: bool = False) -> _T:
        def then_sweep(db: sqlite3.Connection) -> _T:
            result = work(db)
            self._writes += 1
            if self._writes % _SWEEP_EVERY == 0:
                _sweep(db, self.now())
            return result

        return await self._off_loop(self._write_turn, self._writer, what, then_sweep, transaction=transaction)

    async def _off_loop(
        self, turn: anyio.Lock, db: sqlite3.Connection, what: str, work: Work[_T], *, transaction: bool
    ) -> _T:
        """`work(db)` in a worker thread; the whole wait (this process's turn on the connection, then SQLite's
        locks) is bounded by `busy_seconds`, then the caller gets a StoreUnavailableError to retry."""
        deadline = time.monotonic() + self._busy
        try:
            with anyio.fail_after(self._busy):
                await turn.acquire()
        except TimeoutError:
            raise StoreUnavailableError(_busy_message(self.path, what)) from None
        try:
            wait = max(deadline - time.monotonic(), 0.0)
            return await anyio.to_thread.run_sync(
                _run, self.path, db, what, work, wait, transaction, limiter=self._threads
            )
        finally:
            turn.release()


def _run(path: Path, db: sqlite3.Connection, what: str, work: Work[_T], wait: float, transaction: bool) -> _T:
    """In a worker thread: `work(db)`, SQLite's busy handler waiting at most `wait` seconds for the file."""
    with _errors(path, what):
        db.execute(f"PRAGMA busy_timeout = {max(int(wait * 1000), _MIN_WAIT_MS)}")
        if not transaction:
            return work(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result


def _sweep(db: sqlite3.Connection, now: float) -> None:
    for table in ("codes", "grants", "tokens"):
        db.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))  # noqa: S608 - fixed names


def _busy_message(path: Path, what: str) -> str:
    return f"the grant store {path} is busy (another process holds it): could not {what}; retry in a moment"


def _errors(path: Path, what: str) -> _SqliteErrors:
    return _SqliteErrors(path, what)


class _SqliteErrors:
    """Turns sqlite3 failures (locked, full disk, corrupt) into StoreUnavailableError naming what failed."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlite3.Error):
            if _is_busy(exc):
                raise StoreUnavailableError(_busy_message(self.path, self.what)) from None
            raise StoreUnavailableError(_failed_message(self.path, self.what, exc)) from None


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _failed_message(path: Path, what: str, exc: sqlite3.Error) -> str:
    return f"the grant store {path} failed: could not {what} ({exc})"
