"""The start journal: retried starts reuse one key, across processes and restarts; known runs persist."""

from __future__ import annotations

import json
import logging
import multiprocessing
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mogplex_mcp.runs.fingerprints import request_fingerprint, token_fingerprint
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME, StartJournal
from mogplex_mcp.runs.store import KeyClaim

BASE_URL = "https://mogplex.example"
BODY: dict[str, Any] = {"repoId": "repo_1", "prompt": "Fix the flaky test", "harness": "codex"}
TOKEN = "mog_test_token_one"
TOKEN_FP = token_fingerprint(TOKEN)
REQUEST = request_fingerprint(BASE_URL, BODY, token=TOKEN)
OTHER_BODY = request_fingerprint(BASE_URL, {**BODY, "prompt": "Other"}, token=TOKEN)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class KeySource:
    """Numbered keys, so a test can tell which call minted which key."""

    def __init__(self) -> None:
        self.minted = 0

    def __call__(self) -> str:
        self.minted += 1
        return f"key-{self.minted}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / JOURNAL_FILE_NAME


@pytest.fixture
def journal(journal_path: Path, clock: FakeClock) -> Iterator[StartJournal]:
    with StartJournal(journal_path, clock=clock) as opened:
        yield opened


def test_identical_start_within_window_reuses_key(journal: StartJournal, clock: FakeClock) -> None:
    keys = KeySource()
    first = journal.claim_key(TOKEN_FP, REQUEST, keys)
    clock.advance(42.5)
    again = journal.claim_key(TOKEN_FP, REQUEST, keys)

    assert first == KeyClaim("key-1", reused=False, age_seconds=0.0)
    assert again == KeyClaim("key-1", reused=True, age_seconds=42.5)
    assert keys.minted == 1


def test_reused_claim_names_the_run_it_started(journal: StartJournal) -> None:
    journal.claim_key(TOKEN_FP, REQUEST)
    journal.record_started(TOKEN_FP, REQUEST, "run-1")

    assert journal.claim_key(TOKEN_FP, REQUEST).run_id == "run-1"


def test_start_after_window_gets_fresh_key(journal: StartJournal, clock: FakeClock) -> None:
    first = journal.claim_key(TOKEN_FP, REQUEST)
    clock.advance(600.0)
    later = journal.claim_key(TOKEN_FP, REQUEST)
    clock.advance(1.0)

    assert later.idempotency_key != first.idempotency_key
    assert not later.reused
    assert journal.claim_key(TOKEN_FP, REQUEST) == KeyClaim(later.idempotency_key, True, 1.0)


@pytest.mark.parametrize(
    ("fingerprint", "request_hash"),
    [
        pytest.param(token_fingerprint("mog_someone_else"), REQUEST, id="other-token"),
        pytest.param(TOKEN_FP, OTHER_BODY, id="other-body"),
        pytest.param(TOKEN_FP, request_fingerprint("http://127.0.0.1:9", BODY, token=TOKEN), id="other-upstream"),
    ],
)
def test_different_token_or_request_gets_its_own_key(
    journal: StartJournal, fingerprint: str, request_hash: str
) -> None:
    first = journal.claim_key(TOKEN_FP, REQUEST)
    other = journal.claim_key(fingerprint, request_hash)

    assert other.idempotency_key != first.idempotency_key
    assert not other.reused


def test_window_zero_never_reuses_nor_records(journal_path: Path, clock: FakeClock) -> None:
    with StartJournal(journal_path, window_seconds=0, clock=clock) as disabled:
        claims = [disabled.claim_key(TOKEN_FP, REQUEST) for _ in range(3)]
    with StartJournal(journal_path, clock=clock) as enabled:
        after = enabled.claim_key(TOKEN_FP, REQUEST)

    assert len({claim.idempotency_key for claim in claims}) == 3
    assert not any(claim.reused for claim in claims)
    assert not after.reused


def test_forget_makes_next_identical_start_fresh(journal: StartJournal) -> None:
    failed = journal.claim_key(TOKEN_FP, REQUEST)
    journal.forget(TOKEN_FP, REQUEST)
    retry = journal.claim_key(TOKEN_FP, REQUEST)

    assert retry.idempotency_key != failed.idempotency_key
    assert not retry.reused


def test_claim_survives_restart(journal_path: Path, clock: FakeClock) -> None:
    with StartJournal(journal_path, clock=clock) as before:
        first = before.claim_key(TOKEN_FP, REQUEST)
    clock.advance(30)
    with StartJournal.in_state_dir(journal_path.parent, clock=clock) as after:
        again = after.claim_key(TOKEN_FP, REQUEST)

    assert again == KeyClaim(first.idempotency_key, reused=True, age_seconds=30.0)


def _slow_new_key() -> str:
    """Mint a key slowly, so every racer is inside its claim while the first one still holds it open."""
    time.sleep(0.2)  # widens the race window; nothing waits on this
    return str(uuid.uuid4())


def _claim_in_child(path: str, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: open the journal, wait for everyone, then race for the key."""
    with StartJournal(Path(path)) as journal:
        barrier.wait(timeout=60)
        claim = journal.claim_key(TOKEN_FP, REQUEST, _slow_new_key)
    results.put((claim.idempotency_key, claim.reused))


def test_concurrent_processes_racing_on_one_body_share_one_key(journal_path: Path) -> None:
    racers = 8
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    StartJournal(journal_path).close()  # create the file first, as a running server would have
    processes = [ctx.Process(target=_claim_in_child, args=(str(journal_path), barrier, results)) for _ in range(racers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=90) for _ in range(racers)]
    for process in processes:
        process.join(timeout=30)

    assert [process.exitcode for process in processes] == [0] * racers
    assert len({key for key, _ in outcomes}) == 1
    assert sorted(reused for _, reused in outcomes) == [False] + [True] * (racers - 1)


def test_concurrent_threads_on_one_journal_share_one_key(journal: StartJournal) -> None:
    racers = 8
    barrier = threading.Barrier(racers)
    claims: list[KeyClaim] = []

    def race() -> None:
        barrier.wait(timeout=30)
        claims.append(journal.claim_key(TOKEN_FP, REQUEST))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len({claim.idempotency_key for claim in claims}) == 1
    assert sorted(claim.reused for claim in claims) == [False] + [True] * (racers - 1)


def test_journal_file_is_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "fresh-state"
    StartJournal.in_state_dir(state_dir).close()

    assert stat.S_IMODE((state_dir / JOURNAL_FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_existing_world_readable_journal_is_made_private(journal_path: Path) -> None:
    journal_path.parent.mkdir(parents=True)
    journal_path.touch(mode=0o644)
    journal_path.chmod(0o644)
    StartJournal(journal_path).close()

    assert stat.S_IMODE(journal_path.stat().st_mode) == 0o600


def test_token_never_reaches_the_file(journal_path: Path) -> None:
    token = "mog_SENTINEL_4f1c9e_do_not_store"
    fingerprint = token_fingerprint(token)
    with StartJournal(journal_path) as journal:
        journal.claim_key(fingerprint, REQUEST)
        journal.remember_run(fingerprint, "run-1", title="A run")
    stored = b"".join(p.read_bytes() for p in journal_path.parent.iterdir())

    assert fingerprint.encode() in stored  # the grep below looks at the right bytes
    assert token.encode() not in stored
    assert token[4:].encode() not in stored


def test_token_fingerprint_is_stable_short_and_not_the_token() -> None:
    token = "mog_abcdefghijklmnopqrstuvwxyz"

    assert token_fingerprint(token) == token_fingerprint(token)
    assert len(token_fingerprint(token)) == 32
    assert int(token_fingerprint(token), 16) >= 0
    assert token_fingerprint(token) != token_fingerprint(token + "x")


def test_known_runs_newest_first_and_remember_reports_new(journal: StartJournal, clock: FakeClock) -> None:
    first_time = [journal.remember_run(TOKEN_FP, f"run-{i}", title=f"Task {i}") for i in range(3)]
    clock.advance(5)
    seen_again = journal.remember_run(TOKEN_FP, "run-0", status="succeeded")

    runs = journal.known_runs(TOKEN_FP)
    assert first_time == [True, True, True]
    assert not seen_again
    assert [run.run_id for run in runs] == ["run-2", "run-1", "run-0"]
    assert runs[2].title == "Task 0"  # kept: the second sighting had no title
    assert runs[2].status == "succeeded"
    assert runs[2].last_seen - runs[2].first_seen == 5.0
    assert journal.is_known(TOKEN_FP, "run-1")
    assert not journal.is_known(TOKEN_FP, "run-9")


def test_known_runs_are_per_token(journal: StartJournal) -> None:
    journal.remember_run(TOKEN_FP, "run-1")
    other = token_fingerprint("mog_someone_else")

    assert journal.known_runs(other) == []
    assert not journal.is_known(other, "run-1")
    assert journal.known_runs(TOKEN_FP)[0].title == "run-1"  # no title given: the id stands in


def test_known_runs_are_bounded(journal_path: Path, clock: FakeClock) -> None:
    with StartJournal(journal_path, clock=clock, max_runs=5) as journal:
        for i in range(8):
            clock.advance(1)
            journal.remember_run(TOKEN_FP, f"run-{i}")
        runs = journal.known_runs(TOKEN_FP, limit=50)
        limited = journal.known_runs(TOKEN_FP, limit=2)

    assert [run.run_id for run in runs] == ["run-7", "run-6", "run-5", "run-4", "run-3"]
    assert [run.run_id for run in limited] == ["run-7", "run-6"]


def test_known_runs_survive_restart(journal_path: Path, clock: FakeClock) -> None:
    with StartJournal(journal_path, clock=clock) as journal:
        journal.remember_run(TOKEN_FP, "run-1", title="First", status="running", repo_id="repo_1")
    with StartJournal(journal_path, clock=clock) as reopened:
        runs = reopened.known_runs(TOKEN_FP)
        new_again = reopened.remember_run(TOKEN_FP, "run-1")

    assert [(r.run_id, r.title, r.status, r.repo_id) for r in runs] == [("run-1", "First", "running", "repo_1")]
    assert not new_again


def test_titles_are_one_short_line(journal: StartJournal) -> None:
    journal.remember_run(TOKEN_FP, "run-1", title="Fix\tthe\x1b[31m bug\n\nin   parser\u202e" + "x" * 200)
    title = journal.known_runs(TOKEN_FP)[0].title

    assert title.startswith("Fix the[31m bug in parser")
    assert len(title) == 80
    assert title.isprintable()


def test_a_path_that_cannot_hold_a_file_falls_back_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    caplog.set_level(logging.WARNING, logger="mogplex_mcp.runs.journal")

    with StartJournal(blocker / JOURNAL_FILE_NAME) as journal:
        first = journal.claim_key(TOKEN_FP, REQUEST)
        again = journal.claim_key(TOKEN_FP, REQUEST)
        assert journal.remember_run(TOKEN_FP, "run-1")
        assert not journal.persistent

    assert again.idempotency_key == first.idempotency_key
    assert again.reused
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert caplog.records[0].exc_info is None


def test_a_damaged_file_is_replaced_and_keys_are_claimed_in_the_new_one(tmp_path: Path) -> None:
    # Nothing in it can be read, and no other process has it open: it is moved aside (see test_journal_heal.py).
    path = tmp_path / JOURNAL_FILE_NAME
    path.write_bytes(b"this is not an sqlite database " * 64)

    with StartJournal(path) as journal:
        claim = journal.claim_key(TOKEN_FP, REQUEST)
        assert journal.remember_run(TOKEN_FP, "run-1") is True
        assert [run.run_id for run in journal.known_runs(TOKEN_FP)] == ["run-1"]
        assert journal.persistent and journal.claims_in_memory == 0
    assert claim.durable
    assert len(list(tmp_path.glob(f"{JOURNAL_FILE_NAME}.damaged-*"))) == 1


def test_in_memory_journal_works_without_a_path() -> None:
    with StartJournal(None) as journal:
        first = journal.claim_key(TOKEN_FP, REQUEST)

        assert journal.claim_key(TOKEN_FP, REQUEST).idempotency_key == first.idempotency_key
        assert not journal.persistent


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(min_size=1, max_size=12), json_values, min_size=1, max_size=8)


def _reordered(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse insertion order."""
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


@given(body=bodies)
def test_request_fingerprint_ignores_key_order(body: dict[str, Any]) -> None:
    assert request_fingerprint(BASE_URL, _reordered(body), token="t") == request_fingerprint(BASE_URL, body, token="t")


@given(body=bodies, data=st.data())
def test_request_fingerprint_changes_with_any_value(body: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(body)))
    replacement = data.draw(json_values)
    assume(json.dumps(replacement, sort_keys=True) != json.dumps(body[key], sort_keys=True))

    assert request_fingerprint(BASE_URL, {**body, key: replacement}, token="t") != request_fingerprint(
        BASE_URL, body, token="t"
    )
