"""The Redis connection: one client per process, bounded timeouts, and redis errors mapped in one place."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from mogplex_mcp.config import mask_redis_url
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.telemetry import hooks, tracing

logger = logging.getLogger("mogplex_mcp.runs.redis")

DEFAULT_PREFIX = "mogplex-mcp:"
# A tool call must answer within its bound even when Redis hangs: every command gives up after this.
SOCKET_TIMEOUT_SECONDS = 2.0
RETRIES = 2


@dataclass(frozen=True)
class RedisStore:
    """A connected client plus the key prefix every key of this deployment starts with."""

    client: aioredis.Redis
    url: str
    prefix: str = DEFAULT_PREFIX

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def script(self, name: str) -> AsyncScript:
        """The Lua script `name`.lua beside these modules, registered with this client."""
        source = resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
        return self.client.register_script(source)

    @property
    def masked_url(self) -> str:
        return mask_redis_url(self.url)

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers."""
        async with redis_errors(self, "reach Redis"):
            await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose()


def connect(url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = SOCKET_TIMEOUT_SECONDS) -> RedisStore:
    """A client for `url` (redis:// or rediss://); it connects lazily and reconnects by itself."""
    client = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
    )
    return RedisStore(client=client, url=url, prefix=prefix)


@asynccontextmanager
async def redis_errors(store: RedisStore, what: str) -> AsyncIterator[None]:
    """Turn any redis-py failure into StoreUnavailableError naming what failed (the URL masked).

    Also where every Redis operation is timed, counted and traced (`what` is one of a few fixed phrases).
    """
    started = time.perf_counter()
    try:
        with tracing.span(f"redis {what}", {"db.system.name": "redis"}, kind=tracing.SpanKind.CLIENT):
            yield
        hooks.recorder().redis_command(what, time.perf_counter() - started, ok=True)
    except RedisError as exc:
        hooks.recorder().redis_command(what, time.perf_counter() - started, ok=False)
        detail = str(exc).replace(store.url, store.masked_url)[:200]
        raise StoreUnavailableError(
            f"Redis at {store.masked_url} is unavailable: could not {what} ({type(exc).__name__}: {detail})"
        ) from None
