"""The journal when its file fails: claims fall back to memory, are reused and written through, or refused."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mogplex_mcp.runs.fingerprints import clean_title, request_fingerprint, token_fingerprint
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME, StartJournal
from tests.server.journal_faults import locked

TOKEN = "mog_FallbackSuiteToken4Qx9"
FP = token_fingerprint(TOKEN)
REQUEST = request_fingerprint("https://mogplex.example", {"repoId": "r", "prompt": "p"}, token=TOKEN)
OTHER = request_fingerprint("https://mogplex.example", {"repoId": "r", "prompt": "q"}, token=TOKEN)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / JOURNAL_FILE_NAME


@pytest.fixture
def journal(path: Path) -> Iterator[StartJournal]:
    with StartJournal(path, wait_seconds=0.02) as opened:
        opened.remember_run(FP, "warm-up")  # the file and its tables exist
        yield opened


def stored_keys(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT request_hash, idempotency_key FROM start_claims").fetchall())


def test_a_locked_file_falls_back_to_memory_and_keeps_the_key(journal: StartJournal, path: Path) -> None:
    with locked(path):
        first = journal.claim_key(FP, REQUEST)
        again = journal.claim_key(FP, REQUEST)
    after = journal.claim_key(FP, REQUEST)

    assert not first.reused and not first.durable
    assert again.reused and again.idempotency_key == first.idempotency_key
    assert after.reused and after.idempotency_key == first.idempotency_key  # memory is consulted first
    assert journal.claims_in_memory == 1


def test_a_claim_already_in_the_locked_file_is_reused(journal: StartJournal, path: Path) -> None:
    earlier = journal.claim_key(FP, REQUEST)
    with locked(path):
        again = journal.claim_key(FP, REQUEST)

    assert again.reused and again.durable and again.idempotency_key == earlier.idempotency_key


def test_memory_claims_are_written_through_once_the_file_works(path: Path) -> None:
    with StartJournal(path, wait_seconds=0.02) as journal:
        journal.remember_run(FP, "warm-up")
        with locked(path):
            held = journal.claim_key(FP, REQUEST)
        assert stored_keys(path) == {}
    # Closing wrote it through (the next successful claim would have, too): a restart reuses the key.
    with StartJournal(path) as restarted:
        again = restarted.claim_key(FP, REQUEST)

    assert stored_keys(path)[REQUEST] == held.idempotency_key
    assert again.reused and again.idempotency_key == held.idempotency_key


def test_identical_claims_racing_during_an_outage_share_one_key(journal: StartJournal, path: Path) -> None:
    racers = 8
    barrier = threading.Barrier(racers)
    keys: list[str] = []

    def race() -> None:
        barrier.wait(timeout=30)
        keys.append(journal.claim_key(FP, REQUEST).idempotency_key)

    with locked(path):
        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert len(keys) == racers and len(set(keys)) == 1


def test_forget_drops_the_memory_claim_too(journal: StartJournal, path: Path) -> None:
    with locked(path):
        failed = journal.claim_key(FP, REQUEST)
        journal.forget(FP, REQUEST)
        fresh = journal.claim_key(FP, REQUEST)

    assert fresh.idempotency_key != failed.idempotency_key and not fresh.reused


def test_bookkeeping_gives_up_at_once_behind_a_locked_file(journal: StartJournal, path: Path) -> None:
    with locked(path):
        outcomes = [journal.remember_run(FP, f"run-{i}", status="running") for i in range(5)]
        listed = journal.known_runs(FP)  # reads still work while another process holds the write lock

    assert outcomes == [None] * 5
    assert journal.skipped_bookkeeping == 5
    assert [run.run_id for run in listed] == ["warm-up"]
    assert journal.remember_run(FP, "run-0") is True  # and it records again once the lock is gone


def test_window_zero_needs_no_file_at_all(path: Path) -> None:
    path.write_bytes(b"damaged" * 100)
    with StartJournal(path, window_seconds=0) as journal:
        assert not journal.claim_key(FP, REQUEST).reused


def test_titles_lose_secrets_before_the_cut() -> None:
    secret = "opaque-secret-of-the-caller"
    title = clean_title(f"{'x' * 70} mog_{'A' * 30} {secret}", secret)

    assert "mog_A" not in title and "AAAA" not in title and secret not in title


def test_request_fingerprints_depend_on_the_token() -> None:
    body = {"repoId": "r", "prompt": "p"}

    assert request_fingerprint("u", body, token="a") == request_fingerprint("u", body, token="a")
    assert request_fingerprint("u", body, token="a") != request_fingerprint("u", body, token="b")


def test_a_forget_the_file_missed_still_counts(journal: StartJournal, path: Path) -> None:
    claimed = journal.claim_key(FP, REQUEST)  # in the file
    with locked(path):
        journal.forget(FP, REQUEST)  # the start definitely failed, but the file keeps its row
        during = journal.claim_key(FP, REQUEST)
    after = journal.claim_key(FP, REQUEST)

    assert during.idempotency_key != claimed.idempotency_key and not during.reused
    assert after.idempotency_key == during.idempotency_key


def test_the_first_bookkeeping_write_after_an_outage_carries_memory_claims_to_the_file(path: Path) -> None:
    with StartJournal(path, wait_seconds=0.02, hold_off_seconds=0) as journal:
        journal.remember_run(FP, "warm-up")
        with locked(path):
            held = journal.claim_key(FP, REQUEST)
        assert journal.remember_run(FP, "run-after-the-outage") is True

        assert stored_keys(path) == {REQUEST: held.idempotency_key}  # another process would now reuse it too
