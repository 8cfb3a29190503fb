"""Known runs in the journal's SQLite file: the fact columns, and the SQL that pages and updates them.

The journal (journal.py) owns the file; what a known run holds (KnownRun, RunFacts) is named in
`runs/store.py`. This module reads pages of known runs, writes facts, and adds the fact columns to a file
an older version wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from mogplex_mcp.runs.store import KnownRun, RunFacts, RunsQuery

# name -> SQL type; the order is the order of RunFacts' fields.
FACT_COLUMNS: dict[str, str] = {
    "created_at": "TEXT",
    "updated_at": "TEXT",
    "working_branch": "TEXT",
    "root_directory": "TEXT",
    "harness": "TEXT",
    "conversation_id": "TEXT",
    "workspace_session_id": "TEXT",
    "pull_request_url": "TEXT",
    "code_changed": "INTEGER",
    "delivered": "TEXT",
    "changed_files_total": "INTEGER",
}
TERMINAL_STATUSES = ("success", "failed", "cancelled")


def facts_from_row(values: Sequence[Any]) -> RunFacts:
    """RunFacts from the FACT_COLUMNS part of a row, in FACT_COLUMNS order."""
    named = dict(zip(FACT_COLUMNS, values, strict=True))
    if named["code_changed"] is not None:
        named["code_changed"] = bool(named["code_changed"])
    return RunFacts(**named)


def facts_update(facts: RunFacts) -> tuple[str, list[Any]]:
    """`col = ?, …` for the facts that are known, and their values; ("", []) when none is."""
    given = {f.name: getattr(facts, f.name) for f in fields(facts) if getattr(facts, f.name) is not None}
    # Column names come from RunFacts' own fields, never from input.
    assignments = ", ".join(f"{name} = ?" for name in given)
    return assignments, [int(value) if isinstance(value, bool) else value for value in given.values()]


def page_filter(query: RunsQuery) -> tuple[str, list[Any]]:
    """The WHERE conditions (after the fingerprint's) and their arguments for one page."""
    where: list[str] = ["1"]
    args: list[Any] = []
    if query.before is not None:
        where.append("(first_seen < ? OR (first_seen = ? AND rowid < ?))")
        args += [query.before[0], query.before[0], query.before[1]]
    if query.repo_id is not None:
        where.append("repo_id = ?")
        args.append(query.repo_id)
    if query.terminal is not None:
        where.append(("" if query.terminal else "NOT ") + "COALESCE(status IN (?, ?, ?), 0)")
        args += list(TERMINAL_STATUSES)
    return " AND ".join(where), args


_KNOWN_COLUMNS = "run_id, title, status, repo_id, first_seen, last_seen, rowid, " + ", ".join(FACT_COLUMNS)


def _known_run(row: tuple[Any, ...]) -> KnownRun:
    return KnownRun(row[0], row[1] or row[0], row[2], row[3], row[4], row[5], facts_from_row(row[7:]), row[6])


def select_page(db: sqlite3.Connection, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
    where, args = page_filter(query)
    # Only constant column names and "?" placeholders are interpolated (page_filter, _KNOWN_COLUMNS).
    sql = f"SELECT {_KNOWN_COLUMNS} FROM known_runs WHERE fingerprint = ? AND {where}"  # noqa: S608
    sql += " ORDER BY first_seen DESC, rowid DESC LIMIT ?"
    return [_known_run(row) for row in db.execute(sql, (fingerprint, *args, query.limit)).fetchall()]


def select_run(db: sqlite3.Connection, fingerprint: str, run_id: str) -> KnownRun | None:
    sql = f"SELECT {_KNOWN_COLUMNS} FROM known_runs WHERE fingerprint = ? AND run_id = ?"  # noqa: S608
    row = db.execute(sql, (fingerprint, run_id)).fetchone()
    return _known_run(row) if row is not None else None


def store_facts(db: sqlite3.Connection, run: tuple[str, str], facts: RunFacts) -> None:
    """Write the known facts of (fingerprint, run id); the unknown (None) ones stay as stored."""
    assignments, values = facts_update(facts)
    if assignments:
        sql = f"UPDATE known_runs SET {assignments} WHERE fingerprint = ? AND run_id = ?"  # noqa: S608
        db.execute(sql, (*values, *run))


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Tolerant migration, inside the caller's write transaction: add the fact columns an older file lacks."""
    present = {row[1] for row in db.execute("PRAGMA table_info(known_runs)")}
    for name, kind in FACT_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE known_runs ADD COLUMN {name} {kind}")


def upsert_run(
    db: sqlite3.Connection, run: tuple[str, str], fields: tuple[str | None, str | None, str | None], now: float
) -> bool:
    """Insert or refresh (fingerprint, run id) with (title, status, repo id); True when it was not known."""
    known = db.execute("SELECT 1 FROM known_runs WHERE fingerprint = ? AND run_id = ?", run).fetchone()
    db.execute(
        "INSERT INTO known_runs"
        " (fingerprint, run_id, title, status, repo_id, first_seen, last_seen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (fingerprint, run_id) DO UPDATE SET"
        " title = COALESCE(excluded.title, title), status = COALESCE(excluded.status, status),"
        " repo_id = COALESCE(excluded.repo_id, repo_id), last_seen = excluded.last_seen",
        (*run, *fields, now, now),
    )
    return known is None


def prune_runs(db: sqlite3.Connection, fingerprint: str, max_runs: int) -> None:
    """Keep the token's `max_runs` most recently first-seen runs."""
    db.execute(
        "DELETE FROM known_runs WHERE fingerprint = ? AND rowid NOT IN ("
        " SELECT rowid FROM known_runs WHERE fingerprint = ?"
        " ORDER BY first_seen DESC, rowid DESC LIMIT ?)",
        (fingerprint, fingerprint, max_runs),
    )


def select_recent(db: sqlite3.Connection, fingerprint: str, limit: int) -> list[KnownRun]:
    """The token's runs, most recently first seen first, at most `limit` (without their facts)."""
    rows = db.execute(
        "SELECT run_id, title, status, repo_id, first_seen, last_seen FROM known_runs"
        " WHERE fingerprint = ? ORDER BY first_seen DESC, rowid DESC LIMIT ?",
        (fingerprint, limit),
    ).fetchall()
    return [KnownRun(r[0], r[1] or r[0], r[2], r[3], r[4], r[5]) for r in rows]


def is_known_in(db: sqlite3.Connection, fingerprint: str, run_id: str) -> bool:
    row = db.execute("SELECT 1 FROM known_runs WHERE fingerprint = ? AND run_id = ?", (fingerprint, run_id)).fetchone()
    return row is not None
