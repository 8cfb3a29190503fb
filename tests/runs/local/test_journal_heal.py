"""A damaged start journal heals: moved aside (kept), replaced by a fresh file holding what could still be
read, one warning naming both paths; never while another process still has the damaged file open (issue 18).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mogplex_mcp.config import Settings
from mogplex_mcp.doctor import journal_check
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME, JournalUnavailableError, StartJournal
from tests.server.journal_faults import damaged_copies, holding_open, integrity, smash_index

FP = "token-fingerprint"
PAGE = 4096  # SQLite's default page size, which the journal keeps


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / JOURNAL_FILE_NAME


def _filled(path: Path, runs: int = 40) -> str:
    """A journal with `runs` known runs and one claim, closed (everything in the main file); the claim's key."""
    with StartJournal(path, max_runs=1000) as journal:
        for index in range(runs):
            journal.remember_run(FP, f"run-{index:03}", title=f"Run number {index}")
        return journal.claim_key(FP, "request-1").idempotency_key


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
    (aside,) = damaged_copies(path)
    assert aside.read_bytes() == garbage  # kept for the user, untouched
    assert integrity(path) == ["ok"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and str(aside) in warnings[0] and "damaged" in warnings[0]


def test_rows_a_damaged_file_still_yields_are_kept(path: Path) -> None:
    key = _filled(path)
    smash_index(path)
    assert integrity(path) != ["ok"]

    with StartJournal(path, max_runs=1000) as journal:
        listed = [run.run_id for run in journal.known_runs(FP, 100)]
        again = journal.claim_key(FP, "request-1")

    assert sorted(listed) == [f"run-{index:03}" for index in range(40)]
    assert again.reused and again.idempotency_key == key  # the earlier start's key, read from the damaged file
    assert len(damaged_copies(path)) == 1
    assert integrity(path) == ["ok"]


def test_damage_found_by_a_statement_heals_and_the_call_still_answers(path: Path) -> None:
    _filled(path)
    with StartJournal(path, max_runs=1000) as journal:  # quick_check passes on open
        _corrupt_in_another_process(path)
        listed = journal.known_runs(FP, 100)  # reads the damaged index, heals, reads again
        assert len(listed) == 40
        assert journal.remember_run(FP, "run-new") is True
    assert len(damaged_copies(path)) == 1
    assert integrity(path) == ["ok"]


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


@pytest.fixture
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    _filled(path)
    smash_index(path)
    with holding_open(path) as process:
        yield process


def test_a_damaged_file_another_process_has_open_is_left_in_place_until_it_lets_go(
    path: Path, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mogplex_mcp.runs.journal"):
        journal = StartJournal(path, max_runs=1000, hold_off_seconds=0.2)
    try:
        assert damaged_copies(path) == []  # moving it would split the processes between two files
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
    assert len(damaged_copies(path)) == 1
    assert integrity(path) == ["ok"]


def test_processes_finding_the_damage_together_replace_it_once(path: Path) -> None:
    _filled(path)
    smash_index(path)
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from mogplex_mcp.runs.local.journal import StartJournal
        with StartJournal(Path(sys.argv[1]), max_runs=1000) as journal:
            print(journal.claim_key("token-fingerprint", "request-shared").idempotency_key)
        """
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(keys) == 1, "every process ended on the same new file, so the identical start shares one key"
    assert len(damaged_copies(path)) == 1
    assert integrity(path) == ["ok"]


def test_doctor_finds_damage_past_the_first_page(path: Path) -> None:
    _filled(path)
    settings = Settings(token=None, state_dir=path.parent)
    assert (whole := journal_check(settings)) is not None and whole.level == "ok"
    smash_index(path)

    check = journal_check(settings)

    assert check is not None and check.level == "problem"
    assert "damaged" in check.what and str(path) in check.what
    assert check.fix is not None and "moves it aside" in check.fix
