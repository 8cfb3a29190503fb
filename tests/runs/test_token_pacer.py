"""`SharedTokenPacer`: the follower hub's per-token pacer drawing on a shared budget, and falling back when it fails."""

from __future__ import annotations

import logging
import uuid

import anyio
import pytest

from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.token_pacer import SharedTokenPacer
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

FP = token_fingerprint("mog_token_pacer_suite")


async def test_a_429_on_one_replica_pauses_the_token_on_the_other(redis_server: RedisServer) -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    stores = [redis_backend.connect(redis_server.url, prefix=prefix) for _ in range(2)]
    try:
        told_to_wait = anyio.Event()

        async def sleep(seconds: float) -> None:
            told_to_wait.set()
            await anyio.sleep(seconds)

        here = redis_backend.RedisPacer(stores[0], 40, sleep=sleep)
        there = redis_backend.RedisPacer(stores[1], 40)
        pacer = SharedTokenPacer(here, FP)
        await pacer.acquire()
        assert await there.delay_needed(FP) == 0.0

        pacer.pause(30.0)  # what the follower does on a 429 (synchronously)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pacer.acquire)  # the next request carries the pause to Redis, then waits it out
                await told_to_wait.wait()
                tg.cancel_scope.cancel()
        assert 20.0 < await there.delay_needed(FP) <= 30.0
    finally:
        for store in stores:
            await store.aclose()


async def test_when_redis_fails_pacing_falls_back_to_this_process(caplog: pytest.LogCaptureFixture) -> None:
    store = redis_backend.connect(
        f"redis://127.0.0.1:{free_port()}/0", limits=redis_backend.RedisLimits(command_seconds=0.5)
    )
    try:
        pacer = SharedTokenPacer(redis_backend.RedisPacer(store, 3), FP)
        with caplog.at_level(logging.WARNING, logger="mogplex_mcp.runs"), anyio.fail_after(30):
            for _ in range(3):
                await pacer.acquire()  # answered by the local window, not an error
    finally:
        await store.aclose()

    assert pacer.sent_in_window == 3 and pacer.delay_needed() > 0  # the local budget still holds
    warnings = [r.getMessage() for r in caplog.records if "falls back" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage, not one per request"
