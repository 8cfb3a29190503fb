"""The start journal's file on disk: created private, and when damaged moved aside and replaced by a fresh
file, never while another process uses it.

SQLite's locks are what keep processes sharing the file apart, so healing must not break them:

- A side lock file (`journal.sqlite3.lock`, `flock`) is held shared while a process opens a connection
  (until that connection's first read holds SQLite's own lock) and exclusively while one heals. So no
  process connects to a file that is being moved, and two processes never both replace it.
- A file is moved only when no other process holds SQLite's lock on it (`F_GETLK`, asked with no connection
  of this process open): renaming a file another process has open would leave it writing to the moved
  file, and its last close would delete the new file's WAL by name ("How To Corrupt", section 2.4). When
  one does, the damage is reported and replacing it waits until those processes have let go.
- Whatever rows the damaged file still yields (claims, known runs) are copied into the new one, and the
  damaged file is kept beside it, with its -wal and -shm, named with the time it was moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger("mogplex_mcp.runs.journal")

# SQLite's lock bytes on the database file (PENDING, RESERVED, then the SHARED range): every connection to a
# WAL database holds a read lock there for as long as it is open.
_SQLITE_LOCK_START = 0x40000000
_SQLITE_LOCK_BYTES = 512
_FLOCK = "hhqqi4x"  # struct flock on Linux: type, whence, start, len, pid (padded to 32 bytes)
_POLL_SECONDS = 0.01


class CannotExist(Exception):
    """The path cannot hold a file (its parent is a file, or it is absent and cannot be created)."""


def prepare_file(path: Path) -> None:
    """Make the parent directory (0700) and, when absent, the file (0600), without opening an existing file.

    Never open or close a descriptor of a database file this process may be connected to: closing *any*
    descriptor of a file drops every POSIX lock the process holds on it, so other processes' SQLite would
    take this process's connections for gone, checkpoint and delete the WAL from under them, and the file
    corrupts ("How To Corrupt An SQLite Database File", section 2.2). `O_EXCL` only ever opens a file it
    has just created (a new inode, which no connection can be on); an existing file is touched by path only.
    SQLite gives the -wal and -shm files the database file's mode.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise CannotExist(exc.strerror or type(exc).__name__) from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if not os.path.lexists(path):
            raise CannotExist(exc.strerror or type(exc).__name__) from exc
        _make_private(path)  # it exists (EEXIST, or a read-only place): read what it holds
        return
    os.close(fd)


def _make_private(path: Path) -> None:
    """An existing file readable by others becomes 0600 (by path: no descriptor, so no lock is dropped)."""
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass  # not ours to change (another owner, read-only): SQLite reads what it can


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def side_lock(path: Path, *, exclusive: bool, wait: float) -> Iterator[bool | None]:
    """Hold the journal's side lock, waiting at most `wait` seconds: yields True when held, False when the
    wait ran out, None when no lock file can exist there (a read-only state dir: nothing there is healed)."""
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield None
        return
    try:
        yield _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait)
    finally:
        os.close(fd)  # another file than the database: closing it drops no SQLite lock


def _flock(fd: int, mode: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        except OSError:
            return False


def open_elsewhere(path: Path) -> bool:
    """Whether another process holds SQLite's lock on the file. Call only with no connection of ours open:
    closing the descriptor opened here drops every POSIX lock this process holds on the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _SQLITE_LOCK_START, _SQLITE_LOCK_BYTES, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
        return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)
    except OSError:
        return True  # cannot tell: do not move it
    finally:
        os.close(fd)


def damage_of(db: sqlite3.Connection) -> str | None:
    """What `PRAGMA quick_check` finds wrong, or None when the file is whole."""
    try:
        rows = db.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    found = [str(row[0]) for row in rows]
    if found == ["ok"]:
        return None
    lines = [line for text in found for line in text.splitlines() if not line.startswith("***")]
    return "integrity check: " + "; ".join(lines)[:200]


def is_damage(exc: BaseException) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB: the bytes are wrong, not the moment (locks, disk space)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text


Rows = dict[str, list[tuple[tuple[str, ...], tuple[object, ...]]]]


def salvage(db: sqlite3.Connection, tables: tuple[str, ...]) -> Rows:
    """Every row the damaged file still yields, per table, with its column names."""
    found: Rows = {}
    for table in tables:
        rows: list[tuple[tuple[str, ...], tuple[object, ...]]] = []
        try:
            cursor = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - our own table names
            names = tuple(column[0] for column in cursor.description)
            for row in cursor:
                rows.append((names, tuple(row)))
        except sqlite3.DatabaseError:
            pass  # the rest of this table is unreadable: keep what came before
        found[table] = rows
    return found


def restore(db: sqlite3.Connection, rows: Rows) -> int:
    """Copy salvaged rows into the new file (inside the caller's transaction); returns how many went in."""
    restored = 0
    for table, table_rows in rows.items():
        columns = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
        for names, values in table_rows:
            kept = [(name, value) for name, value in zip(names, values, strict=True) if name in columns]
            if not kept:
                continue
            placeholders = ", ".join("?" for _ in kept)
            statement = f"INSERT OR IGNORE INTO {table} ({', '.join(n for n, _ in kept)}) VALUES ({placeholders})"  # noqa: S608
            try:
                restored += db.execute(statement, [value for _, value in kept]).rowcount
            except sqlite3.DatabaseError:
                continue  # a garbled row (a NULL where one is not allowed): leave it in the damaged copy
    return restored


def move_aside(path: Path) -> Path:
    """Rename the file and its -wal/-shm to `<name>.damaged-<UTC time>` (kept for the user); returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):  # the WAL holds committed pages of the file it belongs to: they stay a pair
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.with_name(path.name + suffix), aside.with_name(aside.name + suffix))
    return aside


class Healing:
    """What one attempt to replace a damaged file did: `aside` is set when it was moved."""

    def __init__(self, *, aside: Path | None = None, restored: int = 0, healthy: bool = False, why: str = "") -> None:
        self.aside = aside
        self.restored = restored
        self.healthy = healthy  # the file at the path reads whole now (replaced here, or by another process)
        self.why = why  # why it could not be replaced yet


def replace_damaged(
    path: Path,
    connect: Callable[[], sqlite3.Connection],
    create_schema: Callable[[sqlite3.Connection], None],
    tables: tuple[str, ...],
    wait: float,
) -> Healing:
    """Move a damaged file aside and start a fresh one with what it still yields. Call with no connection
    of this process open to the file; `connect` opens one, `create_schema` fills a new file's tables.
    Never raises for the file's sake: what went wrong is in the result's `why`."""
    with side_lock(path, exclusive=True, wait=wait) as held:
        if not held:
            return Healing(why="another process is repairing it, or the state dir is read-only")
        try:
            rows = _salvage_if_damaged(connect, tables)
        except (OSError, CannotExist, sqlite3.DatabaseError) as exc:
            return Healing(why=f"it cannot be checked ({exc})")
        if rows is None:  # replaced by another process meanwhile, or the error has passed
            return Healing(healthy=True)
        if open_elsewhere(path):
            return Healing(
                why="other processes (mogplex-mcp servers, a sqlite3 shell) still have it open; "
                "it is replaced once they close it"
            )
        try:
            aside = move_aside(path)
        except OSError as exc:
            return Healing(why=f"it cannot be moved aside ({exc.strerror})")
        try:
            restored = _fill(connect, create_schema, rows)
        except (OSError, CannotExist, sqlite3.DatabaseError) as exc:
            # The damaged file is aside already; the next connection creates the tables in the new one.
            logger.warning("start journal %s: rows of the damaged file could not be copied over (%s)", path, exc)
            restored = 0
        return Healing(aside=aside, restored=restored, healthy=True)


def _salvage_if_damaged(connect: Callable[[], sqlite3.Connection], tables: tuple[str, ...]) -> Rows | None:
    """The rows a damaged file still yields, or None when it is whole."""
    db = connect()
    try:
        if damage_of(db) is None:
            return None
        return salvage(db, tables)
    finally:
        db.close()


def _fill(
    connect: Callable[[], sqlite3.Connection], create_schema: Callable[[sqlite3.Connection], None], rows: Rows
) -> int:
    fresh = connect()
    try:
        fresh.execute("BEGIN IMMEDIATE")
        create_schema(fresh)
        restored = restore(fresh, rows)
        fresh.execute("COMMIT")
        return restored
    finally:
        fresh.close()
