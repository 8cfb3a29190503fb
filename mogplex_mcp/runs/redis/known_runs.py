"""`KnownRuns` on Redis: per token fingerprint a sorted set (order) and a hash (details), bounded, with a TTL."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mogplex_mcp.api.models import TERMINAL_STATUSES
from mogplex_mcp.runs.fingerprints import clean_title
from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors
from mogplex_mcp.runs.store import DEFAULT_MAX_RUNS, KnownRun, RunFacts, RunsQuery

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
        facts: RunFacts | None = None,
    ) -> bool:
        cleaned = clean_title(title) if title is not None else ""
        known = {name: value for name, value in asdict(facts).items() if value is not None} if facts else {}
        args: list[str | int] = [run_id, cleaned, status or "", repo_id or "", self._max_runs, self._retention]
        args.append(json.dumps(known) if known else "")
        async with redis_errors(self._store, "remember a run", has_fallback=True):
            new = await self._remember(keys=self._keys(fingerprint), args=args)
        return bool(new)

    async def known_runs(self, fingerprint: str, limit: int = 50) -> list[KnownRun]:
        if limit <= 0:
            return []
        order, details, _ = self._keys(fingerprint)
        async with redis_errors(self._store, "list known runs", has_fallback=True):
            run_ids = [str(run_id) for run_id in await self._store.client.zrevrange(order, 0, limit - 1)]
            raws = await self._store.client.hmget(details, run_ids) if run_ids else []
        return [_known_run(run_id, json.loads(raw)) for run_id, raw in zip(run_ids, raws, strict=True) if raw]

    async def runs_page(self, fingerprint: str, query: RunsQuery) -> list[KnownRun]:
        """Newest first by the order they were first seen in; filters apply to at most `max_runs` (the bound)."""
        if query.limit <= 0:
            return []
        order, details, _ = self._keys(fingerprint)
        top = f"({query.before[1]}" if query.before is not None else "+inf"
        async with redis_errors(self._store, "list known runs", has_fallback=True):
            answer = await self._store.client.zrevrangebyscore(order, top, "-inf", withscores=True)
            ranked = [(str(item[0]), float(item[1])) for item in answer if isinstance(item, tuple | list)]
            run_ids = [str(run_id) for run_id, _ in ranked]
            raws = await self._store.client.hmget(details, run_ids) if run_ids else []
        page: list[KnownRun] = []
        for (run_id, score), raw in zip(ranked, raws, strict=True):
            if raw and len(page) < query.limit:
                run = _known_run(run_id, json.loads(raw), int(score))
                if _matches(run, query):
                    page.append(run)
        return page

    async def known_run(self, fingerprint: str, run_id: str) -> KnownRun | None:
        order, details, _ = self._keys(fingerprint)
        async with redis_errors(self._store, "look up a run", has_fallback=True):
            raw = await self._store.client.hget(details, run_id)
            score = await self._store.client.zscore(order, run_id) if raw else None
        return _known_run(run_id, json.loads(raw), int(score or 0)) if raw else None

    async def is_known(self, fingerprint: str, run_id: str) -> bool:
        async with redis_errors(self._store, "look up a run", has_fallback=True):
            return bool(await self._store.client.hexists(self._keys(fingerprint)[1], run_id))


def _matches(run: KnownRun, query: RunsQuery) -> bool:
    if query.repo_id is not None and run.repo_id != query.repo_id:
        return False
    return query.terminal is None or (run.status in TERMINAL_STATUSES) == query.terminal


def _known_run(run_id: str, meta: dict[str, Any], position: int = 0) -> KnownRun:
    stored = meta.get("facts")
    known: dict[str, Any] = stored if isinstance(stored, dict) else {}
    facts = RunFacts(**{name: known[name] for name in RunFacts.__dataclass_fields__ if name in known})
    return KnownRun(
        run_id=run_id,
        title=str(meta.get("title") or run_id),
        status=meta.get("status"),
        repo_id=meta.get("repo_id"),
        first_seen=float(meta["first_seen"]),
        last_seen=float(meta["last_seen"]),
        facts=facts,
        position=position,
    )
