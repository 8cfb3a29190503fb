"""Known runs: what is kept per run (KnownRun, RunFacts), and the SQL that pages and updates them.

The journal (journal.py) owns the SQLite file; this module names what a known run holds — including the
facts added for list_runs and continue_run — reads pages of them, writes facts, and adds the fact columns
to a file an older version wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from mogplex_mcp.api.models import RunDetail
from mogplex_mcp.runs.views import Delivery

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


@dataclass(frozen=True)
class RunFacts:
    """What list_runs and continue_run need to know of a run beyond its status; None = not known.

    `conversation_id`/`workspace_session_id` are only ever what this server itself sent for the run.
    """

    created_at: str | None = None  # ISO-8601, as the API gave it
    updated_at: str | None = None
    working_branch: str | None = None
    root_directory: str | None = None
    harness: str | None = None
    conversation_id: str | None = None
    workspace_session_id: str | None = None
    pull_request_url: str | None = None
    code_changed: bool | None = None
    # A finished run's derived outcome (runs/views.py `Delivered`), as get_run told it; None: not recorded.
    delivered: str | None = None
    changed_files_total: int | None = None


@dataclass(frozen=True)
class KnownRun:
    """A run this server started or looked at; `title` falls back to the run id."""

    run_id: str
    title: str
    status: str | None
    repo_id: str | None
    first_seen: float
    last_seen: float
    facts: RunFacts = field(default_factory=RunFacts)
    position: int = 0  # with first_seen, the paging cursor: stable while the run is kept


@dataclass(frozen=True)
class RunsQuery:
    """One page of known runs, newest first: after `before` = (first_seen, position) of the last one shown."""

    limit: int = 20
    before: tuple[float, int] | None = None
    repo_id: str | None = None
    terminal: bool | None = None  # True: finished runs only; False: active (or status never seen) only


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


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def facts_of(run: RunDetail, delivery: Delivery | None = None) -> RunFacts:
    """The facts a run's detail (and its delivery, when known) tells."""
    return RunFacts(
        created_at=iso(run.created_at),
        updated_at=iso(run.updated_at),
        working_branch=run.branch.working if run.branch else None,
        root_directory=run.root_directory,
        harness=run.harness,
        pull_request_url=delivery.pull_request_url if delivery else None,
        code_changed=delivery.changed if delivery else None,
    )
