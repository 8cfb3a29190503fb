"""MirroredStartClaims on a real redis-server: the journal is a second line for this replica's claims.

A Redis that forgot its claims (restarted without persistence; here FLUSHDB on a database of its own) is
re-seeded from the journal of the replica that made them; when another replica holds a claim in Redis, its
key wins and this replica's journal adopts it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio

from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.local import LocalStartClaims
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.mirrored_claims import MirroredStartClaims
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

FP, REQUEST = "f" * 32, "r" * 64


async def _forget_everything(url: str) -> None:
    raw = redis.asyncio.Redis.from_url(url)
    try:
        await raw.flushdb()
    finally:
        await raw.aclose()


async def test_a_redis_that_lost_its_claims_is_reseeded_and_the_other_replicas_key_wins(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    await _forget_everything(url)
    store = redis_backend.connect(url)
    with StartJournal(tmp_path / "a.sqlite3") as journal_a, StartJournal(tmp_path / "b.sqlite3") as journal_b:
        a = MirroredStartClaims(redis_backend.RedisStartClaims(store), LocalStartClaims(journal_a))
        b = MirroredStartClaims(redis_backend.RedisStartClaims(store), LocalStartClaims(journal_b))
        try:
            first = await a.claim_key(FP, REQUEST)
            await a.record_started(FP, REQUEST, "run-1")
            await _forget_everything(url)  # Redis restarted without persistence

            again = await a.claim_key(FP, REQUEST)  # through the same replica: its journal remembers
            assert (again.idempotency_key, again.reused, again.run_id) == (first.idempotency_key, True, "run-1")
            elsewhere = await b.claim_key(FP, REQUEST)  # Redis was re-seeded: the other replica agrees
            assert elsewhere.reused and elsewhere.idempotency_key == first.idempotency_key

            other = "s" * 64
            theirs = await b.claim_key(FP, other)  # B claims first; A adopts B's key
            mine = await a.claim_key(FP, other)
            assert mine.reused and mine.idempotency_key == theirs.idempotency_key
            await _forget_everything(url)
            assert (await a.claim_key(FP, other)).idempotency_key == theirs.idempotency_key
        finally:
            await store.aclose()
