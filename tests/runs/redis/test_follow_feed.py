"""RedisFollowFeed on a real redis-server: ordered, resumable, bounded, and kept apart per token fingerprint."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.redis.follow_feed import FEED_TTL_SECONDS
from mogplex_mcp.runs.store import FeedUpdate
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

RUN = "0b6d6f1e-8f59-4b7e-9d7e-6a0d1f3c9a10"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[redis_backend.RedisStore]:
    connected = redis_backend.connect(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:12]}:")
    try:
        yield connected
    finally:
        await connected.aclose()


def update(status: str, *event_ids: str) -> FeedUpdate:
    run = RunDetail(run_id=RUN, status=status)
    events = [RunEvent(id=event_id, type="log", message=f"step {event_id}", payload={"n": 1}) for event_id in event_ids]
    return FeedUpdate(run=run, events=events, window_exhausted=status == "running")


async def test_a_reader_gets_every_update_in_order_and_resumes_after_the_last_one(
    store: redis_backend.RedisStore,
) -> None:
    feed = redis_backend.RedisFollowFeed(store)
    await feed.publish("fp-a", RUN, update("queued", "e1"))
    await feed.publish("fp-a", RUN, update("running", "e2", "e3"))
    first = await feed.read("fp-a", RUN, "0", block_seconds=0.1)
    assert [u.run.status for _, u in first if u.run] == ["queued", "running"]
    assert [e.id for _, u in first for e in u.events] == ["e1", "e2", "e3"]
    assert first[1][1].events[0].message == "step e2" and first[1][1].window_exhausted
    await feed.publish("fp-a", RUN, update("succeeded", "e4"))
    rest = await feed.read("fp-a", RUN, first[-1][0], block_seconds=0.1)
    assert [(u.run.status if u.run else None, [e.id for e in u.events]) for _, u in rest] == [("succeeded", ["e4"])]
    assert await feed.read("fp-a", RUN, rest[-1][0], block_seconds=0.05) == []  # idle: nothing after a short wait


async def test_feeds_are_bounded_and_kept_apart_per_token_fingerprint(store: redis_backend.RedisStore) -> None:
    feed = redis_backend.RedisFollowFeed(store, max_entries=5)
    for n in range(200):
        await feed.publish("fp-a", RUN, update("running", f"e{n}"))
    kept = await store.client.xlen(store.key("feed", "fp-a", RUN))
    assert kept < 200, "old entries are trimmed"  # MAXLEN ~ trims in whole nodes: about, not exactly, 5
    assert await feed.read("fp-b", RUN, "0", block_seconds=0.05) == [], "another token's feed is another key"
    assert 0 < await store.client.ttl(store.key("feed", "fp-a", RUN)) <= FEED_TTL_SECONDS
