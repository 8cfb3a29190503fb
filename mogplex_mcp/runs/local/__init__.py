"""The embedded backend of `runs/store.py`: the SQLite start journal and in-memory pacer and leases (one process)."""

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
