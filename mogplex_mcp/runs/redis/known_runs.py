"""`KnownRuns` on Redis: per token fingerprint a sorted set (order) and a hash (details), bounded, with a TTL."""

from __future__ import annotations

import json
from typing import Any

from mogplex_mcp.runs.journal import DEFAULT_MAX_RUNS, KnownRun, clean_title
from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors

# A token nobody used for this long loses its runs list (each write refreshes it).
DEFAULT_RETENTION_SECONDS = 30 * 86_400


class RedisKnownRuns:
    """The runs list shared by every replica; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self,
        store: RedisStore,
        *,
        max_runs: int = DEFAULT_MAX_RUNS,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self._store = store
        self._max_runs = max(1, max_runs)
        self._retention = max(1, retention_seconds)
        self._remember = store.script("remember")

    def _keys(self, fingerprint: str) -> list[str]:
        return [self._store.key(part, fingerprint) for part in ("runs", "runs-meta", "runs-seq")]

    async def remember_run(
        self,
        fingerprint: str,
        run_id: str,
        *,
        title: str | None = None,
        status: str | None = None,
        repo_id: str | None = None,
    ) -> bool:
        cleaned = clean_title(title) if title is not None else ""
        args: list[str | int] = [run_id, cleaned, status or "", repo_id or "", self._max_runs, self._retention]
        async with redis_errors(self._store, "remember a run"):
            new = await self._remember(keys=self._keys(fingerprint), args=args)
        return bool(new)

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        if limit <= 0:
            return []
        order, details, _ = self._keys(fingerprint)
        async with redis_errors(self._store, "list known runs"):
            run_ids = [str(run_id) for run_id in await self._store.client.zrevrange(order, 0, limit - 1)]
            raws = await self._store.client.hmget(details, run_ids) if run_ids else []
        return [_known_run(run_id, json.loads(raw)) for run_id, raw in zip(run_ids, raws, strict=True) if raw]

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        async with redis_errors(self._store, "look up a run"):
            return bool(await self._store.client.hexists(self._keys(fingerprint)[1], run_id))


def _known_run(run_id: str, meta: dict[str, Any]) -> KnownRun:
    return KnownRun(
        run_id=run_id,
        title=str(meta.get("title") or run_id),
        status=meta.get("status"),
        repo_id=meta.get("repo_id"),
        first_seen=float(meta["first_seen"]),
        last_seen=float(meta["last_seen"]),
    )
