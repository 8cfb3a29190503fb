"""`FollowFeed` on Redis: one Stream per (token fingerprint, run), trimmed to a bound and expiring when idle.

The leader of a run (the replica holding its follow lease) appends what it sees; every other replica
reads on from its last entry id with a blocking XREAD, so it never asks the upstream itself.
"""

from __future__ import annotations

import json
from typing import Any

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors
from mogplex_mcp.runs.store import FeedUpdate

# Entries kept per run (each holds one change: usually a few events, the first one up to 200).
FEED_MAX_ENTRIES = 1_000
# A feed nobody wrote to for this long is dropped by Redis.
FEED_TTL_SECONDS = 3_600
READ_BATCH = 100


def encode_update(update: FeedUpdate) -> str:
    run = update.run.model_dump(mode="json", by_alias=True, exclude_none=True) if update.run else None
    events = [event.model_dump(mode="json", by_alias=True, exclude_none=True) for event in update.events]
    return json.dumps({"run": run, "events": events, "window": update.window_exhausted}, separators=(",", ":"))


def decode_update(text: str) -> FeedUpdate:
    data: dict[str, Any] = json.loads(text)
    run = RunDetail.model_validate(data["run"]) if data.get("run") else None
    events = [RunEvent.model_validate(item) for item in data.get("events") or []]
    return FeedUpdate(run=run, events=events, window_exhausted=bool(data.get("window")))


class RedisFollowFeed:
    """Run feeds in Redis Streams; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self, store: RedisStore, max_entries: int = FEED_MAX_ENTRIES, ttl_seconds: int = FEED_TTL_SECONDS
    ) -> None:
        self._store = store
        self._max_entries = max_entries
        self._ttl_seconds = ttl_seconds

    async def publish(self, fingerprint: str, run_id: str, update: FeedUpdate) -> None:
        key = self._store.key("feed", fingerprint, run_id)
        async with (
            redis_errors(self._store, "publish a run's update"),
            self._store.client.pipeline(transaction=True) as pipe,
        ):
            pipe.xadd(key, {"u": encode_update(update)}, maxlen=self._max_entries, approximate=True)
            pipe.expire(key, self._ttl_seconds)
            await pipe.execute()

    async def read(
        self, fingerprint: str, run_id: str, after: str, block_seconds: float
    ) -> list[tuple[str, FeedUpdate]]:
        key = self._store.key("feed", fingerprint, run_id)
        async with redis_errors(self._store, "read a run's feed", block_seconds=block_seconds):
            answer: Any = await self._store.client.xread(
                {key: after}, count=READ_BATCH, block=max(1, round(block_seconds * 1000))
            )
        updates: list[tuple[str, FeedUpdate]] = []
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                updates.append((str(entry_id), decode_update(fields["u"])))
        return updates
