"""The journal's start_claims table: a claim read, inserted, attached to its run, dropped, and claims held in
memory written through. `journal.py` decides when; this module holds the SQL, as `known_runs.py` does for runs.
"""

from __future__ import annotations

import sqlite3

from mogplex_mcp.runs.local.memory_claims import ClaimId, MemoryClaim


def select_claim(db: sqlite3.Connection, claim_id: ClaimId) -> tuple[str, float, str | None] | None:
    """(idempotency key, created at, run id) of the claim the file holds for the request, if any."""
    row = db.execute(
        "SELECT idempotency_key, created_at, run_id FROM start_claims WHERE fingerprint = ? AND request_hash = ?",
        claim_id,
    ).fetchone()
    return None if row is None else (str(row[0]), float(row[1]), row[2])


def insert_claim(db: sqlite3.Connection, claim_id: ClaimId, key: str, now: float) -> None:
    db.execute(
        "INSERT OR REPLACE INTO start_claims"
        " (fingerprint, request_hash, idempotency_key, created_at, run_id) VALUES (?, ?, ?, ?, NULL)",
        (*claim_id, key, now),
    )


def attach_run(db: sqlite3.Connection, claim_id: ClaimId, run_id: str) -> None:
    db.execute("UPDATE start_claims SET run_id = ? WHERE fingerprint = ? AND request_hash = ?", (run_id, *claim_id))


def drop_claim(db: sqlite3.Connection, claim_id: ClaimId) -> None:
    db.execute("DELETE FROM start_claims WHERE fingerprint = ? AND request_hash = ?", claim_id)


def drop_claims_before(db: sqlite3.Connection, cutoff: float) -> None:
    """Claims created before `cutoff` are past any use (the window and the retention after it)."""
    db.execute("DELETE FROM start_claims WHERE created_at < ?", (cutoff,))


def write_through(db: sqlite3.Connection, claims: list[tuple[ClaimId, MemoryClaim]]) -> None:
    """Copy claims made in memory into the file; one the file already holds for the request wins there."""
    for (fingerprint, request_hash), held in claims:
        db.execute(
            "INSERT OR IGNORE INTO start_claims VALUES (?, ?, ?, ?, ?)",
            (fingerprint, request_hash, held.idempotency_key, held.created_at, held.run_id),
        )
