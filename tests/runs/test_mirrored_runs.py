"""`MirroredKnownRuns`: the shared runs list, and this replica's journal answering while the store is down."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.local import LocalKnownRuns
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.mirrored_runs import MirroredKnownRuns
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

FP = token_fingerprint("mog_mirrored_runs_suite")


async def test_runs_are_shared_and_mirrored_locally(tmp_path: Path, redis_server: RedisServer) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    stores = [redis_backend.connect(redis_server.url, prefix=prefix) for _ in range(2)]
    with StartJournal(tmp_path / "a.sqlite3") as journal_a, StartJournal(tmp_path / "b.sqlite3") as journal_b:
        try:
            here = MirroredKnownRuns(redis_backend.RedisKnownRuns(stores[0]), LocalKnownRuns(journal_a))
            there = MirroredKnownRuns(redis_backend.RedisKnownRuns(stores[1]), LocalKnownRuns(journal_b))
            assert await here.remember_run(FP, "run-1", title="Seen here")
            assert not await there.remember_run(FP, "run-1", status="running")  # not new: the list is shared

            assert [(r.run_id, r.title, r.status) for r in await there.known_runs(FP)] == [
                ("run-1", "Seen here", "running")
            ]
            assert await there.is_known(FP, "run-1")
            assert journal_a.is_known(FP, "run-1")  # the local mirror, for outages
        finally:
            for store in stores:
                await store.aclose()


async def test_while_the_store_is_down_the_journal_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = redis_backend.connect(
        f"redis://127.0.0.1:{free_port()}/0", limits=redis_backend.RedisLimits(command_seconds=0.5)
    )
    with StartJournal(tmp_path / "a.sqlite3") as journal:
        try:
            runs = MirroredKnownRuns(redis_backend.RedisKnownRuns(store), LocalKnownRuns(journal))
            with caplog.at_level(logging.WARNING, logger="mogplex_mcp.runs"):
                assert await runs.remember_run(FP, "run-1", title="Still listed")
                listed = await runs.known_runs(FP)
                known = await runs.is_known(FP, "run-1")
        finally:
            await store.aclose()

    assert [r.title for r in listed] == ["Still listed"] and known
    assert sum("falls back" in r.getMessage() for r in caplog.records) == 1
