"""A damaged start journal heals: moved aside (kept), replaced by a fresh file holding what could still be
read, one warning naming both paths; never while another process still has the damaged file open (issue 18).
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from mogplex_mcp.runs.journal import JOURNAL_FILE_NAME, JournalUnavailableError, StartJournal

FP = "token-fingerprint"
PAGE = 4096


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / JOURNAL_FILE_NAME


def _filled(path: Path, runs: int = 40) -> str:
    """A journal with `runs` known runs and one claim, closed (everything in the main file); the claim's key."""
    with StartJournal(path, max_runs=1000) as journal:
        for index in range(runs):
            journal.remember_run(FP, f"run-{index:03}", title=f"Run number {index}")
        return journal.claim_key(FP, "request-1").idempotency_key


def _smash_index(path: Path, index: str = "known_runs_newest") -> None:
    """Overwrite one index's root page with garbage: the table reads, the file fails quick_check."""
    with closing(sqlite3.connect(path)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    with path.open("r+b") as raw:  # no connection of this process is open: nothing to drop
        raw.seek((root - 1) * PAGE)
        raw.write(b"\x0d\xff" * (PAGE // 2))


def _asides(path: Path) -> list[Path]:
    found = path.parent.glob(f"{JOURNAL_FILE_NAME}.damaged-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def _integrity(path: Path) -> list[tuple[str]]:
    """What integrity_check says (call with no journal of this process open on the file)."""
    with closing(sqlite3.connect(path)) as db:
        try:
            return db.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [(str(exc),)]


def test_a_file_that_is_not_a_database_is_moved_aside_and_replaced(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not an sqlite database " * 64
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="mogplex_mcp.runs.journal"), StartJournal(path) as journal:
        claim = journal.claim_key(FP, "request-1")
        assert journal.remember_run(FP, "run-1") is True
        assert [run.run_id for run in journal.known_runs(FP)] == ["run-1"]

    assert claim.durable and not claim.reused
    (aside,) = _asides(path)
    assert aside.read_bytes() == garbage  # kept for the user, untouched
    assert _integrity(path) == [("ok",)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and str(aside) in warnings[0] and "damaged" in warnings[0]


def test_rows_a_damaged_file_still_yields_are_kept(path: Path) -> None:
    key = _filled(path)
    _smash_index(path)
    assert _integrity(path) != [("ok",)]

    with StartJournal(path, max_runs=1000) as journal:
        listed = [run.run_id for run in journal.known_runs(FP, 100)]
        again = journal.claim_key(FP, "request-1")

    assert sorted(listed) == [f"run-{index:03}" for index in range(40)]
    assert again.reused and again.idempotency_key == key  # the earlier start's key, read from the damaged file
    assert len(_asides(path)) == 1
    assert _integrity(path) == [("ok",)]


def test_damage_found_by_a_statement_heals_and_the_call_still_answers(path: Path) -> None:
    _filled(path)
    with StartJournal(path, max_runs=1000) as journal:  # quick_check passes on open
        _corrupt_in_another_process(path)
        listed = journal.known_runs(FP, 100)  # reads the damaged index, heals, reads again
        assert len(listed) == 40
        assert journal.remember_run(FP, "run-new") is True
    assert len(_asides(path)) == 1
    assert _integrity(path) == [("ok",)]


def _corrupt_in_another_process(path: Path) -> None:
    """Damage the file from outside (opening it here would drop this process's SQLite locks)."""
    code = textwrap.dedent(
        """
        import sqlite3, sys
        path, page = sys.argv[1], int(sys.argv[2])
        with sqlite3.connect(path) as db:
            (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'known_runs_newest'").fetchone()
        with open(path, "r+b") as raw:
            raw.seek((root - 1) * page)
            raw.write(b"\\x0d\\xff" * (page // 2))
        """
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(PAGE)], check=True, timeout=30)


# Holds a plain SQLite connection to the file (with its read lock) until stdin closes.
_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1])
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    print("ready", flush=True)
    sys.stdin.read()
    db.close()
    """
)


@pytest.fixture
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    _filled(path)
    _smash_index(path)
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_damaged_file_another_process_has_open_is_left_in_place_until_it_lets_go(
    path: Path, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mogplex_mcp.runs.journal"):
        journal = StartJournal(path, max_runs=1000, hold_off_seconds=0.2)
    try:
        assert _asides(path) == []  # moving it would split the processes between two files
        assert "still have it open" in caplog.text and str(path) in caplog.text
        with pytest.raises(JournalUnavailableError, match="damaged"):
            journal.claim_key(FP, "request-new")  # no earlier claim can be ruled out: nothing is handed out

        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
        time.sleep(0.3)  # past the hold-off: the next call tries again
        claim = journal.claim_key(FP, "request-new")
        assert claim.durable and not claim.reused
        assert len(journal.known_runs(FP, 100)) == 40  # salvaged when it was replaced
    finally:
        journal.close()
    assert len(_asides(path)) == 1
    assert _integrity(path) == [("ok",)]


def test_processes_finding_the_damage_together_replace_it_once(path: Path) -> None:
    _filled(path)
    _smash_index(path)
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from mogplex_mcp.runs.journal import StartJournal
        with StartJournal(Path(sys.argv[1]), max_runs=1000) as journal:
            print(journal.claim_key("token-fingerprint", "request-shared").idempotency_key)
        """
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(keys) == 1, "every process ended on the same new file, so the identical start shares one key"
    assert len(_asides(path)) == 1
    assert _integrity(path) == [("ok",)]
