"""Run following: one follower per run, shared by every watcher (waits and subscriptions) of that run.

A follower polls the run's events, de-duplicates them by id, wakes its watchers and tells listeners
(the MCP resources layer) about each change. It polls every ~1.5 s while things happen, slows down
while nothing does, stops at a terminal status or when nobody has watched it for a while, and takes
its requests from the token's shared `RequestPacer` so that followers never exhaust the token's
upstream budget.

Where the upstream serves the event stream (SSE), a follower polls once (the run's state and first
200 events), then listens to the stream from the last event it has: push instead of polling, and
the only way past the API's first 200 events. When the stream ends it polls once for the
authoritative status and, unless the run is over, reconnects with the last event id. A 404 on the
stream is remembered per base URL, so every follower of that upstream polls from then on. A stream
that fails (an oversized event, an upstream error) or finds no free stream slot is not reopened at once:
the follower polls, and tries the stream again after a back-off that doubles per failure (up to a minute).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import (
    ApiStatusError,
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    MissingTokenError,
    MogplexError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from mogplex_mcp.api.limits import StreamBudgetExhaustedError
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunEvent
from mogplex_mcp.api.stream import EventStreamClient, StreamUnsupportedError
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.followed_run import EventCache, FollowSettings, RunFollower
from mogplex_mcp.runs.health import TaskHealth, supervise
from mogplex_mcp.runs.local.pacer import LocalPacer
from mogplex_mcp.runs.pacer import PacerTable, RequestPacer
from mogplex_mcp.runs.shared_follow import FollowCoordinator
from mogplex_mcp.runs.store_budget import unbudgeted

logger = logging.getLogger("mogplex_mcp.runs")

__all__ = ["FollowSettings", "FollowerHub", "Listener", "RunFollower"]

_FATAL = (NotFoundError, AuthenticationError, PermissionDeniedError, InvalidRequestError, MissingTokenError)

Listener = Callable[[RunFollower, list[RunEvent], bool], Awaitable[None]]

# The longest a follower polls instead of reopening a stream that keeps failing.
MAX_STREAM_BACKOFF_SECONDS = 60.0


class FollowerHub:
    """Owns every follower, one per (token, run); runs their loops in the server's task group."""

    def __init__(
        self,
        task_group: TaskGroup,
        make_client: Callable[[str], MogplexClient],
        settings: FollowSettings | None = None,
        *,
        make_stream: Callable[[str], EventStreamClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        make_pacer: Callable[[str], RequestPacer] | None = None,
        coordinator: FollowCoordinator | None = None,
        verified: Callable[[str], bool] | None = None,
        known_verified: Callable[[str], Awaitable[bool]] | None = None,
        health: TaskHealth | None = None,
    ) -> None:
        self._tg = task_group
        self._coordinator = coordinator  # one follower per run across replicas (runs/shared_follow.py)
        self._make_client = make_client
        self._make_stream = make_stream
        self.settings = settings or FollowSettings()
        # One budget per token: this process's (the store's local backend), or one shared by every replica
        # (runs/token_pacer.py over Redis) when given.
        local = LocalPacer(self.settings.requests_per_minute, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._followers: OrderedDict[tuple[str, str], RunFollower] = OrderedDict()
        self.cache = EventCache(self.settings.max_cache_bytes)
        # Per-token pacers only for tokens upstream accepted (`verified`, by fingerprint); the others share one,
        # so a made-up bearer never makes per-identity state here (issue 23, #3). Bounded in count and age.
        self._pacers = PacerTable(make_pacer or local.for_token)
        self._verified = verified
        self._known_verified = known_verified
        # Fingerprints whose first request is on its way (its other followers wait for its verdict).
        self._verifying: dict[str, anyio.Event] = {}
        self._strangers = RequestPacer(self.settings.requests_per_minute, clock=clock, sleep=sleep)
        self._listeners: list[Listener] = []
        self._no_stream: set[str] = set()
        self.health = health or TaskHealth(clock=clock)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def hand_over(self) -> None:
        """The process is draining: with Redis, release this replica's follow leases now (shared_follow.py)."""
        if self._coordinator is not None:
            self._coordinator.hand_over()

    def get(self, token: str, run_id: str) -> RunFollower | None:
        return self._followers.get((token_fingerprint(token), run_id))

    def pacer(self, fingerprint: str) -> RequestPacer:
        """The token's pacer; one shared by every token upstream has not accepted (yet)."""
        if self._verified is not None and not self._verified(fingerprint):
            return self._strangers
        return self._pacers.get(fingerprint)

    @asynccontextmanager
    async def _paced(self, fingerprint: str) -> AsyncIterator[RequestPacer]:
        """A slot of the token's pacer for one request (see `pacer`). A token not yet accepted has one request
        on its way at a time: its other followers wait for that verdict, then take the token's own pacer."""
        while not (accepted := await self._accepted(fingerprint)) and fingerprint in self._verifying:
            await self._verifying[fingerprint].wait()
        if accepted:
            pacer = self._pacers.get(fingerprint)
            await pacer.acquire()
            yield pacer
            return
        # Not accepted (yet): this one request is limited by the upstream gate's fair queue for such tokens, not
        # by a pacer (a stranger's flood must not use up a budget a real newcomer's first poll then waits for),
        # and nothing is kept for the token: the pacer is a throwaway, for _record_failure's sake.
        verdict = self._verifying[fingerprint] = anyio.Event()
        try:
            yield RequestPacer(self.settings.requests_per_minute, clock=self._clock, sleep=self._sleep)
        finally:
            del self._verifying[fingerprint]
            verdict.set()

    async def _accepted(self, fingerprint: str) -> bool:
        if self._known_verified is not None:
            return await self._known_verified(fingerprint)
        return self._verified is None or self._verified(fingerprint)

    @property
    def pacer_count(self) -> int:
        return len(self._pacers)

    @property
    def active_count(self) -> int:
        return sum(1 for follower in self._followers.values() if follower.active)

    @property
    def follower_count(self) -> int:
        return len(self._followers)

    @property
    def pacers(self) -> list[RequestPacer]:
        """Every token's budget this hub has made (for aggregate metrics; keyed by nothing)."""
        return list(self._pacers.values())

    @property
    def leases_held(self) -> int:
        """Runs this replica leads for all replicas (follow leases it holds); 0 without a shared store."""
        return int(getattr(self._coordinator, "leading_count", 0))

    def stream_unsupported(self, base_url: str) -> bool:
        """Whether the upstream at `base_url` answered 404 to the event stream (followers poll there)."""
        return base_url.rstrip("/") in self._no_stream

    def can_stream(self, base_url: str) -> bool:
        """Whether followers would try the event stream at `base_url` (not known to lack it)."""
        return self._make_stream is not None and self.settings.use_stream and not self.stream_unsupported(base_url)

    @asynccontextmanager
    async def watch(self, token: str, run_id: str) -> AsyncIterator[RunFollower]:
        """Hold a follower of `run_id` for the duration of the block, starting it if needed."""
        follower = self._acquire(token, run_id)
        try:
            yield follower
        finally:
            follower.watchers -= 1
            follower.last_release = self._clock()
            self._prune()

    def _acquire(self, token: str, run_id: str) -> RunFollower:
        key = (token_fingerprint(token), run_id)
        follower = self._followers.get(key)
        if follower is None or (follower.fatal is not None and not follower.active):
            if follower is not None and follower.watchers <= 0:
                follower.release()
            follower = RunFollower(
                run_id,
                key[0],
                self.settings.max_events_per_run,
                max_bytes=self.settings.max_bytes_per_run,
                cache=self.cache,
            )
            self._followers[key] = follower
        self._followers.move_to_end(key)
        follower.watchers += 1
        if not follower.active and not follower.terminal:
            follower.active = True
            self._tg.start_soon(self._follow, follower, token, name=f"follow {run_id}")
        self._prune()
        return follower

    def _prune(self) -> None:
        """Drop the least recently used idle followers beyond the count, event and byte budgets."""
        idle = [key for key, f in self._followers.items() if not f.active and f.watchers == 0]
        held = sum(self._followers[key].event_count for key in idle)
        for position, key in enumerate(idle):
            over_count = len(idle) - position > self.settings.max_finished_kept
            if not over_count and held <= self.settings.max_idle_events and not self.cache.over:
                break
            held -= self._followers[key].event_count
            self._followers.pop(key).release()

    async def _follow(self, follower: RunFollower, token: str) -> None:
        # Started from inside a tool call, whose store budget (a context variable) it would otherwise inherit.
        # Supervised: a crash (a bug, bad data) restarts this follower, never ends the server's task group.
        try:
            with unbudgeted():
                await supervise(
                    f"follower of {follower.run_id}",
                    lambda: self._follow_once(follower, token),
                    self.health,
                    again=lambda: not self._stopped(follower),
                    sleep=self._sleep,
                )
        finally:
            follower.active = False
            follower.ready.set()
            follower.signal()
            self._prune()

    async def _follow_once(self, follower: RunFollower, token: str) -> None:
        if self._coordinator is None:
            await self._follow_upstream(follower, token)
        else:
            await self._coordinator.follow(
                follower, lambda: self._follow_upstream(follower, token), self._tell_listeners, self._stopped
            )

    async def _follow_upstream(self, follower: RunFollower, token: str) -> None:
        interval = self.settings.poll_interval
        stream = self._make_stream(token) if self._make_stream and self.settings.use_stream else None
        async with self._make_client(token) as client:
            while True:
                changed = await self._poll_once(follower, client)
                if stream is not None and self._needs_backfill(follower, client.base_url):
                    await self._stream_once(follower, stream, client.base_url)
                if self._stopped(follower):
                    return
                if stream is not None and self._may_stream(follower, client.base_url):
                    if await self._stream_once(follower, stream, client.base_url):
                        interval = self.settings.poll_interval
                        continue  # the stream ended: poll once for the status, then reconnect
                    if self._stopped(follower):
                        return
                if changed:
                    interval = self.settings.poll_interval
                else:
                    interval = min(interval * 1.5, self.settings.max_poll_interval)
                await self._sleep(interval)

    def _stopped(self, follower: RunFollower) -> bool:
        return follower.done or self._abandoned(follower)

    def _abandoned(self, follower: RunFollower) -> bool:
        idle_for = self._clock() - follower.last_release
        return follower.watchers <= 0 and idle_for >= self.settings.linger_seconds

    def _may_stream(self, follower: RunFollower, base_url: str) -> bool:
        # After the terminal event the stream has nothing more to say: only the status is missing.
        return (
            follower.run is not None
            and not follower.saw_terminal_event
            and base_url.rstrip("/") not in self._no_stream
            and self._clock() >= follower.stream_resume_at
        )

    def _needs_backfill(self, follower: RunFollower, base_url: str) -> bool:
        """A finished run whose first page was full: the stream replays the events past it, then closes."""
        return follower.terminal and follower.window_exhausted and self._may_stream(follower, base_url)

    async def _poll_once(self, follower: RunFollower, client: MogplexClient) -> bool:
        """One request; True when something changed. Errors are recorded on the follower."""
        async with self._paced(follower.fingerprint) as pacer:
            try:
                page = await client.list_events(follower.run_id, limit=EVENTS_LIMIT_MAX)
            except MogplexError as exc:
                self._record_failure(follower, exc, pacer)
                return False
        fresh, status_changed = follower.merge(page)
        follower.ready.set()
        await self._announce(follower, fresh, status_changed)
        return bool(fresh or status_changed)

    async def _stream_once(self, follower: RunFollower, stream: EventStreamClient, base_url: str) -> bool:
        """Listen to one connection of the event stream; True when it delivered new events.

        A connection that brought nothing new (only the run's state, or only silence) is not retried at
        once: the caller backs off, so a stream that keeps closing early cannot eat the token's budget.

        A watchdog ends the connection once nobody has watched the run for `linger_seconds`.
        """
        pacer = self.pacer(follower.fingerprint)
        await pacer.acquire()
        delivered: list[bool] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._cancel_when_abandoned, follower, tg.cancel_scope)
            try:
                await self._listen(follower, stream, base_url, pacer, delivered)
            finally:
                tg.cancel_scope.cancel()
        return bool(delivered)

    async def _listen(
        self,
        follower: RunFollower,
        stream: EventStreamClient,
        base_url: str,
        pacer: RequestPacer,
        delivered: list[bool],
    ) -> None:
        try:
            async with stream.open(
                base_url,
                follower.run_id,
                last_event_id=follower.last_event_id,
                idle_timeout=self.settings.stream_idle_seconds,
            ) as items:
                follower.set_streaming(True)
                async for item in items:
                    fresh, status_changed = follower.take(item)
                    if fresh and not delivered:
                        delivered.append(True)
                        follower.stream_failures = 0
                    await self._announce(follower, fresh, status_changed)
        except StreamBudgetExhaustedError as exc:  # nothing was sent: poll, and try for a slot later
            logger.debug("following %s by polling for now: %s", follower.run_id, exc)
            self._back_off_stream(follower)
        except StreamUnsupportedError:
            logger.info("%s has no event stream: following runs there by polling", base_url)
            self._no_stream.add(base_url.rstrip("/"))
            follower.set_streaming(False)
        except BadRequestError as exc:  # e.g. the service no longer knows our Last-Event-ID
            logger.info("following %s: the event stream refused to resume (%s); polling", follower.run_id, exc)
            follower.stream_refused = True  # polls continue for this run
            follower.set_streaming(False)
        except UpstreamTimeoutError:
            pass  # the stream was quiet for `stream_idle_seconds`: reconnecting doubles as a status check
        except MogplexError as exc:  # e.g. an oversized event: the stream is dropped, reopened later
            self._record_failure(follower, exc, pacer)
            self._back_off_stream(follower)

    def _back_off_stream(self, follower: RunFollower) -> None:
        """No stream for a while (doubling per failure, polls carry on): a failing stream costs little."""
        follower.stream_failures += 1
        follower.set_streaming(False)
        delay = self.settings.poll_interval * 2.0 ** min(follower.stream_failures, 16)
        follower.stream_resume_at = self._clock() + min(delay, MAX_STREAM_BACKOFF_SECONDS)

    async def _cancel_when_abandoned(self, follower: RunFollower, scope: anyio.CancelScope) -> None:
        while not self._abandoned(follower):
            await self._sleep(max(0.05, min(self.settings.linger_seconds, self.settings.poll_interval)))
        scope.cancel()

    def _record_failure(self, follower: RunFollower, exc: MogplexError, pacer: RequestPacer) -> None:
        if isinstance(exc, RateLimitedError):
            pacer.pause(exc.retry_after if exc.retry_after is not None else 60.0)
            logger.info("following %s: rate limited, pausing %s s", follower.run_id, exc.retry_after)
            return
        if isinstance(exc, _FATAL):
            follower.fatal = exc
        else:
            follower.error = exc
            status = exc.status if isinstance(exc, ApiStatusError) else None
            logger.info("following %s: %s (HTTP %s)", follower.run_id, type(exc).__name__, status)
        follower.ready.set()

    async def _announce(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        await self._tell_listeners(follower, fresh, status_changed)  # first: this replica's bookkeeping as before
        if (fresh or status_changed) and self._coordinator is not None:
            await self._coordinator.publish(follower, fresh, status_changed)

    async def _tell_listeners(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        if fresh or status_changed:
            for listener in list(self._listeners):
                await listener(follower, fresh, status_changed)
