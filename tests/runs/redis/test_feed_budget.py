"""Issue 23, finding 5: one user's run feed cannot fill a shared Redis, and start claims always fit.

A real `redis-server` with a small `maxmemory` and `noeviction` (the policy docs/scale.md asks for): the
issue's flood (150 events of 500 KB in one run) scaled down; what each run and each token may publish; the
high-water mark that keeps bulk data away from claims; and what `doctor` reports about the Redis.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.config import Settings
from mogplex_mcp.doctor import redis_setup_checks, run_checks
from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.redis.feed_format import CUT_KEY, EVENT_MAX_BYTES
from mogplex_mcp.runs.redis.follow_feed import FeedLimits
from mogplex_mcp.runs.store import FeedUpdate, StoreUnavailableError
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

MAXMEMORY = ("--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
PR_URL = "https://github.com/acme/app/pull/7"


@pytest.fixture
async def small_redis() -> AsyncIterator[RedisServer]:
    with running_redis(extra=MAXMEMORY) as server:
        yield server


def big_update(run_id: str, n: int, size: int) -> FeedUpdate:
    event = RunEvent(
        id=f"ev-{n}", type="log", message="m" * size,
        payload={"stage": "git_delivery", "pull_request_url": PR_URL, "text": "t" * size},
    )  # fmt: skip
    return FeedUpdate(run=RunDetail(run_id=run_id, status="running"), events=[event])


async def _feed_bytes(store: redis_backend.RedisStore, fingerprint: str, run_id: str) -> int:
    entries: Any = await store.client.xrange(store.key("feed", fingerprint, run_id))
    return sum(len(str(fields.get("u", ""))) for _, fields in entries)


async def test_one_runs_flood_of_big_events_leaves_room_for_everyone_elses_start_claims(
    small_redis: RedisServer,
) -> None:
    store = redis_backend.connect(small_redis.url)
    feed = redis_backend.RedisFollowFeed(store)  # the default budgets
    claims = redis_backend.RedisStartClaims(store)
    try:
        for n in range(40):  # 40 events of 2 × 250 KB: 20 MB raw, more than twice the whole Redis
            with contextlib.suppress(StoreUnavailableError):  # (a full Redis refuses: the leader carries on)
                await feed.publish("fp-flood", "run-flood", big_update("run-flood", n, 250_000))
        held = await _feed_bytes(store, "fp-flood", "run-flood")
        assert held <= FeedLimits().run_bytes
        for user in range(50):  # other users' starts are claimed as usual
            claim = await claims.claim_key(f"fp-user-{user}", "request")
            assert not claim.reused
        info = await store.client.info("memory")
        assert info["used_memory"] < info["maxmemory"] * FeedLimits().high_water
    finally:
        await store.aclose()


async def test_events_are_shared_compact_with_a_note_and_the_fields_views_read(redis_server: RedisServer) -> None:
    store = redis_backend.connect(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
    feed = redis_backend.RedisFollowFeed(store)
    try:
        await feed.publish("fp-a", "run-1", big_update("run-1", 0, 500_000))
        [(_, update)] = await feed.read("fp-a", "run-1", "0", block_seconds=0.1)
        entries: Any = await store.client.xrange(store.key("feed", "fp-a", "run-1"))
        entry = entries[0][1]
    finally:
        await store.aclose()
    assert int(entry["n"]) <= EVENT_MAX_BYTES + 1024 and entry["v"] == "2"
    [event] = update.events
    assert event.payload["pull_request_url"] == PR_URL and event.payload["stage"] == "git_delivery"
    assert event.message is not None and "not shared between replicas" in event.message
    assert "cut" in str(event.payload[CUT_KEY])


async def test_a_runs_feed_keeps_its_newest_entries_within_its_byte_budget(redis_server: RedisServer) -> None:
    store = redis_backend.connect(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
    feed = redis_backend.RedisFollowFeed(store, limits=FeedLimits(run_bytes=64 * 1024))
    try:
        for n in range(200):
            await feed.publish("fp-a", "run-1", big_update("run-1", n, 1_500))
        held = await _feed_bytes(store, "fp-a", "run-1")
        read = await feed.read("fp-a", "run-1", "0", block_seconds=0.1)
    finally:
        await store.aclose()
    assert 32 * 1024 < held <= 64 * 1024
    ids = [event.id for _, update in read for event in update.events]
    assert ids[-1] == "ev-199" and "ev-0" not in ids  # the oldest went first


async def test_a_token_over_its_budget_stops_sharing_and_readers_follow_alone(redis_server: RedisServer) -> None:
    store = redis_backend.connect(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
    feed = redis_backend.RedisFollowFeed(store, limits=FeedLimits(token_bytes=48 * 1024))
    try:
        for run in range(10):
            for n in range(4):
                await feed.publish("fp-heavy", f"run-{run}", big_update(f"run-{run}", n, 1_500))
        await feed.publish("fp-light", "run-x", big_update("run-x", 0, 1_500))
        spent = int(await store.client.get(store.key("feed-spent", "fp-heavy")) or 0)
        last = await feed.read("fp-heavy", "run-9", "0", block_seconds=0.1)
        light = await feed.read("fp-light", "run-x", "0", block_seconds=0.1)
    finally:
        await store.aclose()
    assert spent <= 48 * 1024
    assert [u.follow_alone for _, u in last] == [True], "only the marker: readers follow run-9 themselves"
    assert [e.id for _, u in light for e in u.events] == ["ev-0"], "another token is not held back"


async def test_above_the_high_water_mark_only_a_marker_is_written_and_claims_still_fit(
    small_redis: RedisServer,
) -> None:
    store = redis_backend.connect(small_redis.url)
    feed = redis_backend.RedisFollowFeed(store)
    claims = redis_backend.RedisStartClaims(store)
    try:
        info = await store.client.info("memory")
        filler = 0
        while info["used_memory"] < info["maxmemory"] * 0.85:  # something else fills this Redis
            await store.client.set(f"other-app:{filler}", "x" * 100_000)
            filler += 1
            info = await store.client.info("memory")
        await feed.publish("fp-a", "run-1", big_update("run-1", 0, 5_000))
        read = await feed.read("fp-a", "run-1", "0", block_seconds=0.1)
        claim = await claims.claim_key("fp-b", "request")
    finally:
        await store.aclose()
    assert [u.follow_alone for _, u in read] == [True]
    assert not claim.reused


def test_doctor_reports_the_eviction_policy_memory_and_persistence(tmp_path: Path) -> None:
    for extra, expected in (
        (MAXMEMORY, ["ok Redis memory:", "warn Redis has no AOF"]),
        (("--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"), ["problem Redis evicts keys"]),
        (("--appendonly", "yes"), ["warn Redis has no maxmemory", "ok Redis persists with AOF"]),
    ):
        with running_redis(extra=extra) as server:
            settings = Settings(redis_url=server.url, state_dir=tmp_path)
            env = {"MOGPLEX_REDIS_URL": server.url, "MOGPLEX_MCP_STATE_DIR": str(tmp_path)}
            checks, _ = run_checks(env, network=False)
            assert not any("Redis memory" in c.what for c in checks), "--no-network asks Redis nothing"
            lines = [f"{c.level} {c.what}" for c in redis_setup_checks(settings)]
        for start in expected:
            assert any(line.startswith(start) for line in lines), (start, lines)


def test_doctor_prints_what_the_redis_needs_end_to_end(tmp_path: Path) -> None:
    from mogplex_mcp.emulator import EmulatorThread
    from tests.test_cli import run_cli

    secret = "Dr#Pass?wo/rd"
    with EmulatorThread() as emu, running_redis(extra=("--requirepass", secret, *MAXMEMORY)) as server:
        from urllib.parse import quote

        url = f"redis://:{quote(secret, safe='')}@127.0.0.1:{server.port}/0"
        result = run_cli(
            "doctor", "--base-url", emu.base_url,
            MOGPLEX_REDIS_URL=url, MOGPLEX_TOKEN=emu.token, MOGPLEX_MCP_STATE_DIR=str(tmp_path),
        )  # fmt: skip
    out = result.stdout + result.stderr
    assert "ok       shared state in Redis at redis://***@127.0.0.1" in out
    assert "ok       Redis memory:" in out and "policy noeviction" in out
    assert "warn     Redis has no AOF" in out and "fix: set appendonly yes" in out
    assert not any(piece in out for piece in ("Dr#Pass", "Pass?wo", "wo/rd", "Dr%23Pass"))
    assert secret not in out and quote(secret, safe="") not in out and "Traceback" not in out
