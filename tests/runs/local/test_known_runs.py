"""The journal's known-run facts: a file from an older version migrates, pages are stable, filters hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.store import RunFacts, RunsQuery

FP = token_fingerprint("mog_known_runs_test_token")
OTHER = token_fingerprint("mog_another_users_token_x")
# known_runs as the first release wrote it, before list_runs needed more columns.
OLD_SCHEMA = """
CREATE TABLE known_runs (
    fingerprint TEXT NOT NULL, run_id TEXT NOT NULL, title TEXT, status TEXT, repo_id TEXT,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (fingerprint, run_id)
);
"""


class StillClock:
    """Every run seen in the same instant: only the row order can tell them apart."""

    def __call__(self) -> float:
        return 1_700_000_000.0


def test_a_file_from_an_older_version_gains_the_new_columns_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO known_runs VALUES (?, 'run-old', 'Old task', 'success', 'repo-1', 1.0, 2.0)", (FP,))
    with StartJournal(path) as journal:
        assert journal.persistent
        old = journal.known_run(FP, "run-old")
        assert old is not None and old.title == "Old task" and old.facts == RunFacts()
        journal.remember_run(FP, "run-old", facts=RunFacts(working_branch="feature/x", code_changed=True))
    with StartJournal(path) as reopened:  # the migration is idempotent
        again = reopened.known_run(FP, "run-old")
        assert again is not None and again.facts.working_branch == "feature/x" and again.facts.code_changed is True


def test_facts_fill_in_and_are_never_erased_by_a_later_unknown(tmp_path: Path) -> None:
    with StartJournal(tmp_path / "j.sqlite3") as journal:
        journal.remember_run(FP, "run-1", status="pending", facts=RunFacts(conversation_id="conv-1", harness="codex"))
        journal.remember_run(FP, "run-1", status="success", facts=RunFacts(pull_request_url="https://x/pull/1"))
        known = journal.known_run(FP, "run-1")
        assert known is not None and known.status == "success"
        assert known.facts == RunFacts(harness="codex", conversation_id="conv-1", pull_request_url="https://x/pull/1")
        assert journal.known_run(OTHER, "run-1") is None, "facts belong to the token that saw the run"


def test_pages_follow_the_cursor_without_repeats_even_within_one_instant(tmp_path: Path) -> None:
    with StartJournal(tmp_path / "j.sqlite3", clock=StillClock()) as journal:
        for n in range(7):
            journal.remember_run(FP, f"run-{n}", status="success" if n % 2 else "streaming", repo_id=f"repo-{n % 3}")
        journal.remember_run(OTHER, "theirs", status="streaming")
        seen: list[str] = []
        before = None
        while True:
            page = journal.runs_page(FP, RunsQuery(limit=3, before=before))
            seen += [run.run_id for run in page]
            if len(page) < 3:
                break
            before = (page[-1].first_seen, page[-1].position)
        assert seen == [f"run-{n}" for n in reversed(range(7))]
        finished = journal.runs_page(FP, RunsQuery(limit=10, terminal=True))
        assert [run.run_id for run in finished] == ["run-5", "run-3", "run-1"]
        active = journal.runs_page(FP, RunsQuery(limit=10, terminal=False, repo_id="repo-0"))
        assert [run.run_id for run in active] == ["run-6", "run-0"]
