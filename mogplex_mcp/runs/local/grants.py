"""`GrantStore` on SQLite: its own file in the state dir (`oauth-grants.sqlite3`, mode 0600), beside the journal.

Separate from the start journal on purpose: grants have their own lifecycle (a user signs in again when it is
lost) and their own failure modes. Every statement is short; a busy database waits at most `busy_seconds`.
Expired rows are ignored on read and swept on write.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path

from mogplex_mcp.runs.grant_store import (
    Grant,
    IssuedCode,
    IssuedToken,
    dump,
    load_code,
    load_grant,
    load_token,
)
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


class LocalGrantStore:
    """Grants in one SQLite file; several handles (processes) on one file see each other's writes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, busy_seconds: float = 2.0) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # never world-readable, even for a moment
        self._db = sqlite3.connect(path, timeout=busy_seconds, isolation_level=None, check_same_thread=False)
        with self._errors("open the grant store"):
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
        self._writes = 0

    @classmethod
    def in_state_dir(cls, state_dir: Path, **kwargs: float) -> LocalGrantStore:
        return cls(state_dir / FILE_NAME, **kwargs)  # type: ignore[arg-type]

    def now(self) -> float:
        return self._clock()

    def close(self) -> None:
        self._db.close()

    async def save_code(self, code_hash: str, code: IssuedCode) -> None:
        self._write("INSERT OR REPLACE INTO codes VALUES (?, ?, ?)", (code_hash, dump(code), code.expires_at))

    async def take_code(self, code_hash: str) -> IssuedCode | None:
        with self._errors("take an authorization code"):
            row = self._db.execute(
                "DELETE FROM codes WHERE hash = ? AND expires_at > ? RETURNING body", (code_hash, self.now())
            ).fetchone()
        return load_code(row[0]) if row else None

    async def save_grant(self, grant: Grant) -> None:
        values = (grant.grant_id, grant.fingerprint, dump(grant), grant.expires_at)
        self._write("INSERT OR REPLACE INTO grants VALUES (?, ?, ?, ?)", values)

    async def grant(self, grant_id: str) -> Grant | None:
        row = self._read("SELECT body FROM grants WHERE id = ? AND expires_at > ?", (grant_id, self.now()))
        return load_grant(row[0]) if row else None

    async def drop_grant(self, grant_id: str) -> bool:
        with self._errors("drop a grant"):
            dropped = self._db.execute("DELETE FROM grants WHERE id = ?", (grant_id,)).rowcount
            self._db.execute("DELETE FROM tokens WHERE grant_id = ?", (grant_id,))
        return dropped > 0

    async def drop_grants_of(self, fingerprint: str) -> list[str]:
        with self._errors("drop a token's grants"):
            rows = self._db.execute("DELETE FROM grants WHERE fingerprint = ? RETURNING id", (fingerprint,)).fetchall()
            ids = [str(row[0]) for row in rows]
            for grant_id in ids:
                self._db.execute("DELETE FROM tokens WHERE grant_id = ?", (grant_id,))
        return ids

    async def live_grant_ids(self, grant_ids: Collection[str]) -> set[str]:
        wanted, live = list(grant_ids), set[str]()
        with self._errors("check grants"):
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                sql = f"SELECT id FROM grants WHERE expires_at > ? AND id IN ({marks})"  # noqa: S608 - only marks
                live.update(str(row[0]) for row in self._db.execute(sql, (self.now(), *batch)))
        return live

    async def grants(self) -> AsyncIterator[Grant]:
        after = ""
        while True:  # keyset pages: a long listing never holds a read transaction open
            with self._errors("list grants"):
                rows = self._db.execute(
                    "SELECT id, body FROM grants WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?",
                    (after, self.now(), _BATCH),
                ).fetchall()
            for row in rows:
                yield load_grant(row[1])
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    async def save_token(self, token_hash: str, token: IssuedToken) -> None:
        values = (token_hash, token.grant_id, dump(token), token.expires_at)
        self._write("INSERT OR REPLACE INTO tokens VALUES (?, ?, 0, ?, ?)", values)

    async def token(self, token_hash: str) -> IssuedToken | None:
        row = self._read("SELECT body FROM tokens WHERE hash = ? AND expires_at > ?", (token_hash, self.now()))
        return load_token(row[0]) if row else None

    async def spend_refresh(self, token_hash: str) -> tuple[IssuedToken, bool] | None:
        with self._errors("use a refresh token"):
            row = self._db.execute(
                "UPDATE tokens SET used = used + 1 WHERE hash = ? AND expires_at > ? RETURNING body, used",
                (token_hash, self.now()),
            ).fetchone()
        if row is None:
            return None
        return load_token(row[0]), row[1] == 1

    def _read(self, sql: str, values: tuple[object, ...]) -> tuple[str] | None:
        with self._errors("read the grant store"):
            row: tuple[str] | None = self._db.execute(sql, values).fetchone()
        return row

    def _write(self, sql: str, values: tuple[object, ...]) -> None:
        with self._errors("write the grant store"):
            self._db.execute(sql, values)
            self._writes += 1
            if self._writes % _SWEEP_EVERY == 0:
                self._sweep()

    def _sweep(self) -> None:
        now = self.now()
        for table in ("codes", "grants", "tokens"):
            self._db.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))  # noqa: S608 - fixed names

    def _errors(self, what: str) -> _SqliteErrors:
        return _SqliteErrors(self.path, what)


class _SqliteErrors:
    """Turns sqlite3 failures (locked, full disk, corrupt) into StoreUnavailableError naming what failed."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlite3.Error):
            raise StoreUnavailableError(f"the grant store {self.path} failed: could not {self.what} ({exc})") from None
