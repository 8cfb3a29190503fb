"""`MirroredStartClaims`: start claims in the shared store (Redis), with this replica's journal as a second line.

Redis is the authority every replica shares; but a Redis restarted without persistence forgets every claim,
and an identical start retried across the restart would get a fresh key — a second paid run. So each claim
made on this replica is also kept in its journal (the SQLite file, as without Redis), and the journal is
asked first: when it already holds a live claim for the same start, that key is the one offered to Redis, so
a Redis that lost the claim is re-seeded with it and the retry replays the first run. When Redis holds a
claim of its own (another replica's), Redis's key wins and the journal follows it.

What it cannot cover: a start first made through another replica and retried through this one after the
restart (only that replica's journal knows it) — docs/scale.md says which persistence closes that gap.
A journal that fails (disk full, locked) never blocks a start: Redis alone then decides, as before.
"""

from __future__ import annotations

import logging
from typing import Protocol

from mogplex_mcp.runs.local import LocalStartClaims
from mogplex_mcp.runs.local.journal import JournalUnavailableError
from mogplex_mcp.runs.store import KeyClaim

logger = logging.getLogger("mogplex_mcp.runs")


class ProposingClaims(Protocol):
    """Start claims whose fresh claim can take a key the caller proposes (RedisStartClaims)."""

    async def claim_key(self, fingerprint: str, request_hash: str, proposed: str | None = None) -> KeyClaim: ...

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None: ...

    async def forget(self, fingerprint: str, request_hash: str) -> None: ...


class MirroredStartClaims:
    """`StartClaims` on Redis, each claim also kept in this replica's journal and offered back to Redis."""

    def __init__(self, shared: ProposingClaims, local: LocalStartClaims) -> None:
        self.shared = shared
        self.local = local

    async def claim_key(self, fingerprint: str, request_hash: str) -> KeyClaim:
        here = await self._claim_here(fingerprint, request_hash)
        claim = await self.shared.claim_key(fingerprint, request_hash, proposed=here.idempotency_key if here else None)
        if here is None:
            return claim
        if claim.reused and claim.idempotency_key != here.idempotency_key:
            await self._follow_shared(fingerprint, request_hash, claim.idempotency_key)
            return claim
        if here.reused and not claim.reused:
            logger.warning("Redis had lost a start claim (restarted without persistence?): re-seeded from the journal")
            return here  # this replica's earlier start: replay it
        return claim

    async def _claim_here(self, fingerprint: str, request_hash: str) -> KeyClaim | None:
        try:
            return await self.local.claim_key(fingerprint, request_hash)
        except JournalUnavailableError as exc:
            logger.warning("start claims rest on Redis alone for now: the journal cannot vouch (%s)", exc.reason)
            return None

    async def _follow_shared(self, fingerprint: str, request_hash: str, key: str) -> None:
        """The journal adopts the key another replica claimed in Redis."""
        try:
            await self.local.forget(fingerprint, request_hash)
            await self.local.claim_key(fingerprint, request_hash, proposed=key)
        except JournalUnavailableError as exc:
            logger.warning("the journal could not adopt a shared start claim: %s", exc.reason)

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        await self.local.record_started(fingerprint, request_hash, run_id)
        await self.shared.record_started(fingerprint, request_hash, run_id)

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        await self.local.forget(fingerprint, request_hash)
        await self.shared.forget(fingerprint, request_hash)
