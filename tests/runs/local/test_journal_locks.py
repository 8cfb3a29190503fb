"""Server processes sharing one journal keep seeing each other: one process's clean close never pulls the
write-ahead log from under another that is still using the file (issue 18).

Each "server" here is a real separate process holding a `StartJournal` open, driven line by line over its
stdin, so POSIX locks behave as between real servers (they are per process, which threads cannot show).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME, StartJournal

FP = "token-fingerprint"

# Commands: "remember RUN" (upsert a run, print its result), "list" (print the run ids), "quit" (clean close).
_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mogplex_mcp.runs.local.journal import StartJournal

    journal = StartJournal(Path(sys.argv[1]), max_runs=10_000)
    print("ready", flush=True)
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        if verb == "remember":
            print(journal.remember_run(sys.argv[2], arg), flush=True)
        elif verb == "list":
            print(",".join(sorted(run.run_id for run in journal.known_runs(sys.argv[2], 10_000))), flush=True)
        elif verb == "quit":
            break
    journal.close()
    print("closed", flush=True)
    """
)


class Holder:
    """A separate process with the journal open, as a running server has it."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path), FP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask(None) == "ready"

    def ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def remember(self, run_id: str) -> None:
        assert self.ask(f"remember {run_id}") in ("True", "False")

    def runs(self) -> set[str]:
        return set(filter(None, self.ask("list").split(",")))

    def deleted_files(self) -> list[str]:
        """Journal files this process still writes to although they are gone from the directory."""
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        targets = [os.readlink(fd) for fd in fd_dir.iterdir() if _readable_link(fd)]
        return [t for t in targets if JOURNAL_FILE_NAME in t and t.endswith("(deleted)")]

    def quit(self) -> None:
        assert self.ask("quit") == "closed"
        assert self.proc.wait(timeout=10) == 0


def _readable_link(fd: Path) -> bool:
    try:
        os.readlink(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / JOURNAL_FILE_NAME


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait()


def test_a_clean_close_elsewhere_leaves_the_wal_another_process_uses(path: Path, holders: list[Holder]) -> None:
    """Process A is connected; B opens, writes and closes cleanly; A still writes where everyone reads."""
    StartJournal(path).close()  # an existing file, as every server but the very first finds it
    a = Holder(path)
    holders.append(a)
    a.remember("run-a1")
    wal = path.with_name(JOURNAL_FILE_NAME + "-wal")
    assert wal.exists()

    b = Holder(path)
    holders.append(b)
    b.remember("run-b1")
    assert b.runs() == {"run-a1", "run-b1"}
    b.quit()

    assert wal.exists(), "B's clean close deleted the WAL that A is still using"
    assert a.deleted_files() == []
    a.remember("run-a2")  # lands in the live WAL, where a newcomer looks
    c = Holder(path)
    holders.append(c)
    assert c.runs() == {"run-a1", "run-b1", "run-a2"}
    c.remember("run-c1")
    assert a.runs() == {"run-a1", "run-b1", "run-a2", "run-c1"}


def test_processes_opening_and_closing_in_turn_keep_the_file_whole(path: Path, holders: list[Holder]) -> None:
    """The fixed open/write/close order that corrupted the file within seconds (issue 18)."""
    expected: set[str] = set()
    live: list[Holder] = []
    for round_ in range(6):
        newcomer = Holder(path)
        holders.append(newcomer)
        live.append(newcomer)
        for index, holder in enumerate(live):
            run_id = f"run-{round_}-{index}"
            holder.remember(run_id)
            expected.add(run_id)
        if len(live) > 2:
            live.pop(0).quit()
    for holder in live:
        assert holder.runs() == expected
        holder.quit()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with StartJournal(path, max_runs=10_000) as reopened:
        assert {run.run_id for run in reopened.known_runs(FP, 10_000)} == expected
