"""`GrantStore` on Redis: every replica honours a grant any replica issued.

Keys (under the deployment prefix): `oauth:code:<hash>` (taken with GETDEL: single use), `oauth:grant:<id>`,
`oauth:grants-of:<fingerprint>` (a set of grant ids, for dropping a PAT's grants), `oauth:token:<hash>` and
`oauth:spent:<hash>` (SET NX: the first use of a refresh token wins, a replay finds it taken). Every key expires
with its record (PX), so Redis holds only live grants. Values hold hashes, fingerprints and sealed PATs only.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Collection

from mogplex_mcp.runs.grant_store import (
    Grant,
    IssuedCode,
    IssuedToken,
    dump,
    load_code,
    load_grant,
    load_token,
)
from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors

# Keys per MGET / SCAN page: one round trip each, small enough not to stall Redis.
_BATCH = 500


class RedisGrantStore:
    """Grants shared by every replica on one Redis; raises StoreUnavailableError when Redis cannot answer."""

    def __init__(self, store: RedisStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def _ttl_ms(self, expires_at: float) -> int | None:
        remaining = expires_at - self.now()
        return math.ceil(remaining * 1000) if remaining > 0 else None

    async def save_code(self, code_hash: str, code: IssuedCode) -> None:
        ttl = self._ttl_ms(code.expires_at)
        if ttl is not None:
            async with redis_errors(self._store, "save an authorization code"):
                await self._store.client.set(self._store.key("oauth", "code", code_hash), dump(code), px=ttl)

    async def take_code(self, code_hash: str) -> IssuedCode | None:
        async with redis_errors(self._store, "take an authorization code"):
            body = await self._store.client.getdel(self._store.key("oauth", "code", code_hash))
        code = load_code(str(body)) if body else None
        return code if code is not None and code.expires_at > self.now() else None

    async def save_grant(self, grant: Grant) -> None:
        ttl = self._ttl_ms(grant.expires_at)
        if ttl is None:
            return
        index = self._store.key("oauth", "grants-of", grant.fingerprint)
        async with redis_errors(self._store, "save a grant"), self._store.client.pipeline(transaction=True) as pipe:
            pipe.set(self._store.key("oauth", "grant", grant.grant_id), dump(grant), px=ttl)
            pipe.sadd(index, grant.grant_id)
            # The index lives as long as its longest grant; dead ids in it are harmless (skipped on drop).
            pipe.pexpire(index, ttl, gt=True)
            pipe.pexpire(index, ttl, nx=True)
            await pipe.execute()

    async def grant(self, grant_id: str) -> Grant | None:
        async with redis_errors(self._store, "read a grant"):
            body = await self._store.client.get(self._store.key("oauth", "grant", grant_id))
        grant = load_grant(str(body)) if body else None
        return grant if grant is not None and grant.expires_at > self.now() else None

    async def drop_grant(self, grant_id: str) -> bool:
        async with redis_errors(self._store, "drop a grant"):
            return bool(await self._store.client.delete(self._store.key("oauth", "grant", grant_id)))

    async def drop_grants_of(self, fingerprint: str) -> list[str]:
        index = self._store.key("oauth", "grants-of", fingerprint)
        async with redis_errors(self._store, "drop a token's grants"):
            ids = sorted(str(gid) for gid in await self._store.client.smembers(index))
            if not ids:
                return []
            async with self._store.client.pipeline(transaction=True) as pipe:
                for grant_id in ids:
                    pipe.delete(self._store.key("oauth", "grant", grant_id))
                pipe.delete(index)
                deleted = await pipe.execute()
        return [grant_id for grant_id, count in zip(ids, deleted, strict=False) if count]

    async def live_grant_ids(self, grant_ids: Collection[str]) -> set[str]:
        wanted, live = list(grant_ids), set[str]()
        async with redis_errors(self._store, "check grants"):
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                bodies = await self._store.client.mget([self._store.key("oauth", "grant", gid) for gid in batch])
                now = self.now()
                live.update(g.grant_id for body in bodies if body and (g := load_grant(str(body))).expires_at > now)
        return live

    async def grants(self) -> AsyncIterator[Grant]:
        pattern = _glob_escaped(self._store.key("oauth", "grant", "")) + "*"
        cursor = 0
        seen: set[str] = set()  # SCAN may return a key twice
        while True:
            async with redis_errors(self._store, "list grants"):
                cursor, keys = await self._store.client.scan(cursor=cursor, match=pattern, count=_BATCH)
                bodies = await self._store.client.mget(keys) if keys else []
            now = self.now()
            for body in bodies:
                if body and (grant := load_grant(str(body))).expires_at > now and grant.grant_id not in seen:
                    seen.add(grant.grant_id)
                    yield grant
            if cursor == 0:
                return

    async def save_token(self, token_hash: str, token: IssuedToken) -> None:
        ttl = self._ttl_ms(token.expires_at)
        if ttl is not None:
            async with redis_errors(self._store, "save a token"):
                await self._store.client.set(self._store.key("oauth", "token", token_hash), dump(token), px=ttl)

    async def token(self, token_hash: str) -> IssuedToken | None:
        async with redis_errors(self._store, "read a token"):
            body = await self._store.client.get(self._store.key("oauth", "token", token_hash))
        token = load_token(str(body)) if body else None
        return token if token is not None and token.expires_at > self.now() else None

    async def spend_refresh(self, token_hash: str) -> tuple[IssuedToken, bool] | None:
        token = await self.token(token_hash)
        if token is None:
            return None
        ttl = self._ttl_ms(token.expires_at) or 1
        async with redis_errors(self._store, "use a refresh token"):
            first = await self._store.client.set(self._store.key("oauth", "spent", token_hash), "1", nx=True, px=ttl)
        return token, bool(first)


def _glob_escaped(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern (a deployment prefix may hold glob characters)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
