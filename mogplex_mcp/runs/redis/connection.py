"""The Redis connection: one client per process, bounded time per command, a circuit breaker, errors mapped here.

Every command runs inside `redis_errors`, the one place that decides how long Redis may take and what a
failure becomes:

- a command gets at most `RedisLimits.command_seconds` (a read that has a local copy to fall back on, only
  `read_seconds`), and never more than what is left of the tool call's store budget (`store_time_left`);
- a command that times out at its full limit or cannot connect opens the breaker: for `breaker_seconds` no
  command is sent at all (each fails at once with StoreUnavailableError, so callers fall back at once); then
  one command is let through as a probe (half-open) and its answer closes or reopens the breaker. A read
  that merely passed its short `read_seconds` falls back for that call only; `SLOW_READS_TO_OPEN` of them in
  a row (no answer in between) open the breaker too, so a loaded machine's hiccup never refuses a start;
- every redis-py failure becomes StoreUnavailableError naming what failed, the URL masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mogplex_mcp.config import mask_redis_url
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.runs.store_budget import spending_store_time, store_time_left
from mogplex_mcp.telemetry import hooks, tracing

logger = logging.getLogger("mogplex_mcp.runs.redis")

DEFAULT_PREFIX = "mogplex-mcp:"
RETRIES = 1
SLOW_READS_TO_OPEN = 3
# redis-py's own socket timeout is only a backstop: `redis_errors` cuts every command at its limit first.
SOCKET_BACKSTOP_SECONDS = 10.0


@dataclass(frozen=True)
class RedisLimits:
    """How long Redis may take (Settings.redis_*; docs/scale.md "Budgets")."""

    command_seconds: float = 2.0  # any one command (claims, writes, lease renewals), connecting included
    read_seconds: float = 0.5  # a read with a local copy to answer from instead (the runs list)
    breaker_seconds: float = 3.0  # after a timeout or lost connection, Redis is not asked for this long


class Breaker:
    """A circuit breaker: closed (ask Redis), open (do not), half-open (one probe decides)."""

    def __init__(self, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_seconds = open_seconds
        self._clock = clock
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._slow_reads = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def admit(self, *, may_probe: bool = True) -> bool:
        """Whether a command may be sent now; past the open period, the first caller that may probe goes."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until or not may_probe:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        if self._open_until is not None:
            logger.warning("Redis answers again: the circuit breaker is closed")
        self._open_until = None
        self._probing = False
        self._slow_reads = 0

    def slow(self, why: str) -> None:
        """A read passed its short limit: open only after SLOW_READS_TO_OPEN of them in a row."""
        self._slow_reads += 1
        if self._slow_reads >= SLOW_READS_TO_OPEN or self._open_until is not None:
            self.failed(why)
        else:
            self._probing = False

    def failed(self, why: str) -> None:
        if self._open_until is None:
            logger.warning("Redis %s: not asked for %g s (circuit breaker open)", why, self._open_seconds)
        self._open_until = self._clock() + self._open_seconds
        self._probing = False

    def released(self) -> None:
        """A probe that ended without a verdict (cancelled from outside): let the next caller probe."""
        self._probing = False


@dataclass(frozen=True)
class RedisStore:
    """A connected client plus the key prefix every key of this deployment starts with, its limits and breaker."""

    client: aioredis.Redis
    url: str
    prefix: str = DEFAULT_PREFIX
    limits: RedisLimits = field(default_factory=RedisLimits)
    breaker: Breaker = field(default_factory=lambda: Breaker(RedisLimits().breaker_seconds))

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


def connect(url: str, *, prefix: str = DEFAULT_PREFIX, limits: RedisLimits | None = None) -> RedisStore:
    """A client for `url` (redis:// or rediss://); it connects lazily and reconnects by itself.

    A URL redis-py cannot read raises StoreUnavailableError naming the masked URL only: redis-py's own message
    quotes the piece it could not read, which may be part of the password.
    """
    the_limits = limits or RedisLimits()
    try:
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_BACKSTOP_SECONDS,
            socket_connect_timeout=the_limits.command_seconds,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), RETRIES),
        )
    except ValueError:
        raise StoreUnavailableError(
            f"Redis URL {mask_redis_url(url)} cannot be read (percent-encode #, ?, / and @ in its password)"
        ) from None
    return RedisStore(
        client=client, url=url, prefix=prefix, limits=the_limits, breaker=Breaker(the_limits.breaker_seconds)
    )


def _limit(store: RedisStore, what: str, has_fallback: bool, block_seconds: float) -> float:
    """This command's time limit: its kind's, cut to what is left of the call's budget; refused when none is."""
    limit = (store.limits.read_seconds if has_fallback else store.limits.command_seconds) + block_seconds
    left = store_time_left()
    if left is not None and left < limit:
        if left <= 0:
            raise StoreUnavailableError(f"could not {what}: this call's time for Redis is used up")
        limit = left
    if not store.breaker.admit(may_probe=block_seconds <= 0):
        raise StoreUnavailableError(
            f"Redis at {store.masked_url} is unavailable: could not {what} (it failed moments ago;"
            f" asked again within {store.limits.breaker_seconds:g} s)"
        )
    return limit


def _timed_out(store: RedisStore, limit: float) -> None:
    """What a timeout says about Redis, for the breaker."""
    if limit >= store.limits.command_seconds:  # the full limit: hung, not merely slow
        store.breaker.failed(f"did not answer within {limit:g} s")
    elif limit >= store.limits.read_seconds:
        store.breaker.slow(f"did not answer {SLOW_READS_TO_OPEN} reads in a row within {limit:g} s")
    else:  # cut short by what was left of the call's budget: no verdict on Redis
        store.breaker.released()


@asynccontextmanager
async def redis_errors(
    store: RedisStore, what: str, *, has_fallback: bool = False, block_seconds: float = 0.0
) -> AsyncIterator[None]:
    """Run the block's Redis commands within their limit and the breaker; failures become StoreUnavailableError.

    `has_fallback`: the caller answers from a local copy when this fails, so it waits only `read_seconds`.
    `block_seconds`: a blocking read's own wait (XREAD BLOCK), added to its limit; such reads never probe.
    Also where every Redis operation is timed, counted and traced (`what` is one of a few fixed phrases).
    """
    started = time.perf_counter()
    try:
        limit = _limit(store, what, has_fallback, block_seconds)
    except StoreUnavailableError:
        hooks.recorder().redis_command(what, 0.0, ok=False)
        raise
    verdict = False
    try:
        with (
            tracing.span(f"redis {what}", {"db.system.name": "redis"}, kind=tracing.SpanKind.CLIENT),
            spending_store_time(),
            anyio.fail_after(limit),
        ):
            yield
        verdict = True
        store.breaker.succeeded()
        hooks.recorder().redis_command(what, time.perf_counter() - started, ok=True)
    except TimeoutError:
        verdict = True
        _timed_out(store, limit)
        hooks.recorder().redis_command(what, time.perf_counter() - started, ok=False)
        raise StoreUnavailableError(
            f"Redis at {store.masked_url} is unavailable: could not {what} (no answer within {limit:g} s)"
        ) from None
    except RedisError as exc:
        verdict = True
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            store.breaker.failed(f"failed ({type(exc).__name__})")
        else:
            store.breaker.succeeded()  # it answered, with an error (e.g. OOM): no reason to stop asking
        hooks.recorder().redis_command(what, time.perf_counter() - started, ok=False)
        detail = str(exc).replace(store.url, store.masked_url)[:200]
        raise StoreUnavailableError(
            f"Redis at {store.masked_url} is unavailable: could not {what} ({type(exc).__name__}: {detail})"
        ) from None
    finally:
        if not verdict:
            store.breaker.released()
