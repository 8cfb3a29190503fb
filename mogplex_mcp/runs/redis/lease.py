"""`FollowLease` on Redis: SET NX PX takes a lease; Lua compare-and-renew / compare-and-release keep it honest.

A holder that stalls past its lease loses it; renew then says so, and another replica may take over.
"""

from __future__ import annotations

from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors


class RedisFollowLease:
    """One holder (a replica) of leases in Redis; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(self, store: RedisStore, holder: str, lease_seconds: float) -> None:
        self._store = store
        self.holder = holder
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._renew = store.script("renew")
        self._release = store.script("release")

    async def acquire(self, name: str) -> bool:
        key = self._store.key("lease", name)
        async with redis_errors(self._store, "take a follow lease"):
            if await self._store.client.set(key, self.holder, nx=True, px=self._lease_ms):
                return True
            return bool(await self._renew(keys=[key], args=[self.holder, self._lease_ms]))

    async def renew(self, name: str) -> bool:
        async with redis_errors(self._store, "renew a follow lease"):
            return bool(await self._renew(keys=[self._store.key("lease", name)], args=[self.holder, self._lease_ms]))

    async def release(self, name: str) -> bool:
        async with redis_errors(self._store, "release a follow lease"):
            return bool(await self._release(keys=[self._store.key("lease", name)], args=[self.holder]))
