"""The known-runs table's newer columns: per-run facts for list_runs and continue_run, paging, migration.

The journal (journal.py) owns the table; this module names what the columns added for orchestration
mean, builds the SQL fragments that read and write them, and adds them to a file an older version wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
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


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Tolerant migration: add the fact columns a file from an older version lacks (one transaction)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(known_runs)")}
        for name, kind in FACT_COLUMNS.items():
            if name not in present:
                db.execute(f"ALTER TABLE known_runs ADD COLUMN {name} {kind}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
