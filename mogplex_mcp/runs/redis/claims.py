"""`StartClaims` on Redis: one key per (token fingerprint, request hash), taken with SET NX, the window as TTL.

Every replica and every restart sees the same claims, so an identical start retried anywhere within the
window reuses the first call's Idempotency-Key and the upstream replays the first run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors
from mogplex_mcp.runs.store import DEFAULT_WINDOW_SECONDS, KeyClaim


def _new_uuid_key() -> str:
    return str(uuid.uuid4())


class RedisStartClaims:
    """Start claims shared by every replica; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(
        self,
        store: RedisStore,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        new_key: Callable[[], str] = _new_uuid_key,
    ) -> None:
        self._store = store
        self._window_ms = max(0, round(window_seconds * 1000))
        self._new_key = new_key
        self._claim = store.script("claim")
        self._record = store.script("record")

    def _keys(self, fingerprint: str, request_hash: str) -> list[str]:
        return [
            self._store.key("claim", fingerprint, request_hash),
            self._store.key("claim-run", fingerprint, request_hash),
        ]

    async def claim_key(self, fingerprint: str, request_hash: str, proposed: str | None = None) -> KeyClaim:
        """As `StartClaims.claim_key`; a fresh claim takes `proposed` as its key when given."""
        new_key = proposed or self._new_key()
        if self._window_ms <= 0:
            return KeyClaim(new_key, reused=False, age_seconds=0.0)
        async with redis_errors(self._store, "claim an idempotency key"):
            fresh, key, ttl_ms, run_id = await self._claim(
                keys=self._keys(fingerprint, request_hash), args=[new_key, self._window_ms]
            )
        if fresh:
            return KeyClaim(str(key), reused=False, age_seconds=0.0)
        age = max(0.0, (self._window_ms - int(ttl_ms)) / 1000)
        return KeyClaim(str(key), reused=True, age_seconds=age, run_id=str(run_id) or None)

    async def record_started(self, fingerprint: str, request_hash: str, run_id: str) -> None:
        async with redis_errors(self._store, "record a started run"):
            await self._record(keys=self._keys(fingerprint, request_hash), args=[run_id])

    async def forget(self, fingerprint: str, request_hash: str) -> None:
        async with redis_errors(self._store, "forget a start"):
            await self._store.client.delete(*self._keys(fingerprint, request_hash))
