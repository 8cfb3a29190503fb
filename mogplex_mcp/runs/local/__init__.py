"""The embedded backend of `runs/store.py`: the SQLite start journal and in-memory pacer and leases (one process).

`journal.py` (StartJournal: de-duplicated starts and known runs in one SQLite file), `journal_file.py` (the
file: opening, schema, bounded transactions), `journal_heal.py` (a damaged file moved aside and replaced),
`known_runs.py` and `claim_rows.py` (the SQL behind the runs list and the start claims), `memory_claims.py`
(claims held in this process while the file cannot take them), `journal_store.py` (the async
`StartClaims`/`KnownRuns` on the journal), `pacer.py`, `lease.py`, `grants.py` (OAuth grants on SQLite).
May import: `runs/` top level, `api/`. Never `runs/redis/`.
"""

from mogplex_mcp.runs.local.journal_store import LocalKnownRuns, LocalStartClaims
from mogplex_mcp.runs.local.lease import LocalFollowLease, LocalLeaseTable
from mogplex_mcp.runs.local.pacer import LocalPacer
from mogplex_mcp.runs.local.verified import LocalVerifiedTokens

__all__ = [
    "LocalFollowLease",
    "LocalKnownRuns",
    "LocalLeaseTable",
    "LocalPacer",
    "LocalStartClaims",
    "LocalVerifiedTokens",
]
