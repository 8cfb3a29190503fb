"""Ways to make the start journal's file fail for real, and a storm of retried starts to run against it."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.types import CallToolResult

from mogplex_mcp.emulator import Emulator, EmulatorConfig
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from tests.provision import missing

RUNS = "/api/v1/mogplex/runs"
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"
# No start or request limits: the storm is about the journal, not the upstream's quotas.
STORM_UPSTREAM = EmulatorConfig(speed=50.0, rate_limit_per_minute=0, start_limits=(0, 0, 0))
JOURNAL_UNAVAILABLE = "start journal is unavailable"

CallStart = Callable[[dict[str, Any]], Awaitable[CallToolResult]]


@contextmanager
def locked(journal: Path) -> Iterator[None]:
    """Another process's connection holding the write lock (a backup, a shell, a replica stuck mid-write)."""
    other = sqlite3.connect(journal, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@contextmanager
def read_only(journal: Path) -> Iterator[None]:
    """The OS refuses writes to the journal (and its WAL). Root ignores file modes, so root uses `chattr +i`."""
    files = [p for p in (journal, journal.with_name(journal.name + "-wal")) if p.exists()]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in files}
        for p in files:
            p.chmod(0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *map(str, files)], capture_output=True).returncode != 0:
        missing(
            "`chattr +i` (the immutable flag) on this filesystem, which root needs for a read-only file",
            "apt-get install e2fsprogs, on ext4/xfs/btrfs",
        )
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, files)], check=True)


def full_disk_server(state_dir: Path, size_kb: int = 160) -> tuple[list[str], str]:
    """A command that runs the stdio server with its state dir on a tiny filesystem of its own, and the failure
    the journal will report.

    A private tmpfs in a user+mount namespace (no root needed where user namespaces are allowed): ENOSPC, which
    SQLite reports as a full disk. Where namespaces are not allowed, a per-process file-size limit makes the OS
    refuse the journal's writes past it (EFBIG, which SQLite reports as an I/O error).
    """
    serve = [sys.executable, "-m", "mogplex_mcp", "serve"]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode == 0:
        script = f'mount -t tmpfs -o size={size_kb}k tmpfs "$0" && exec "$@"'
        return [unshare, "-rm", "sh", "-c", script, str(state_dir), *serve], "the disk is full"
    limit = size_kb * 1024
    launcher = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'mogplex_mcp', 'serve'])"
    )
    return [sys.executable, "-c", launcher], "a disk I/O error"


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_FILE_NAME


@dataclass
class StormResult:
    """What the callers saw: the run each logical start ended with, and every start call made."""

    runs: dict[int, set[str]] = field(default_factory=dict)
    calls: int = 0
    failed_calls: int = 0
    refused: int = 0


async def storm(
    call_start: CallStart,
    emulator: Emulator,
    *,
    logical: int,
    attempts: int = 4,
    concurrency: int = 8,
    seed: int = 11,
) -> StormResult:
    """`logical` distinct starts, each called `attempts` times (a model retrying), with upstream faults mixed in.

    Faults hit whichever start POST comes next: a connection dropped after the run was created, or a 500.
    A call that fails is retried until one succeeds, so each logical start should end with exactly one run.
    """
    rng = random.Random(seed)
    result = StormResult()
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int) -> None:
        arguments = {"repoId": REPO_ID, "prompt": f"Storm task {index}: tidy module {index % 17}"}
        seen: set[str] = set()
        async with limiter:
            for attempt in range(attempts * 3):
                if attempt >= attempts and seen:
                    break
                roll = rng.random()
                if roll < 0.15:
                    emulator.inject_fault("drop_after_commit", count=1, method="POST", path=RUNS)
                elif roll < 0.25:
                    emulator.inject_fault("internal_500", count=1, method="POST", path=RUNS)
                answer = await call_start(arguments)
                result.calls += 1
                if answer.is_error:
                    result.failed_calls += 1
                    text = " ".join(getattr(block, "text", "") for block in answer.content)
                    result.refused += JOURNAL_UNAVAILABLE in text
                    continue
                assert answer.structured_content is not None
                seen.add(str(answer.structured_content["run"]["runId"]))
        result.runs[index] = seen

    async with anyio.create_task_group() as tg:
        for index in range(logical):
            tg.start_soon(one, index)
    emulator.clear_faults()
    return result


def assert_one_run_per_logical_start(result: StormResult, emulator: Emulator, logical: int) -> None:
    """Every logical start ended with one run, its calls all named that run, and upstream holds no more."""
    assert len(result.runs) == logical
    assert all(len(seen) == 1 for seen in result.runs.values()), {i: s for i, s in result.runs.items() if len(s) != 1}
    final = {next(iter(seen)) for seen in result.runs.values()}
    assert len(final) == logical, "two logical starts were answered with the same run"
    assert sorted(emulator.run_ids()) == sorted(final), "upstream holds runs no caller was told about"


PAGE_SIZE = 4096  # SQLite's default, which the journal keeps


def smash_index(journal: Path, index: str = "known_runs_newest") -> None:
    """Overwrite one index's root page with garbage: the tables still read, integrity_check fails.

    Call with no connection of this process open on the file (closing this descriptor would drop its locks).
    """
    with closing(sqlite3.connect(journal)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    with journal.open("r+b") as raw:
        raw.seek((root - 1) * PAGE_SIZE)
        raw.write(b"\x0d\xff" * (PAGE_SIZE // 2))


def integrity(journal: Path) -> list[str]:
    """What `PRAGMA integrity_check` says of the file (["ok"] when whole)."""
    with closing(sqlite3.connect(journal)) as db:
        try:
            return [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]


def damaged_copies(journal: Path) -> list[Path]:
    """Damaged files moved aside (their -wal/-shm companions not counted)."""
    found = journal.parent.glob(f"{journal.name}.damaged-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


_HOLDER = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1])\n"
    "db.execute('SELECT count(*) FROM sqlite_master').fetchone()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextmanager
def holding_open(journal: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with an ordinary SQLite connection open on the file (and SQLite's read lock)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(journal)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait()
