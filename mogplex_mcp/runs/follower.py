"""Run following: one follower per run, shared by every watcher (waits and subscriptions) of that run.

A follower polls the run's events, de-duplicates them by id, wakes its watchers and tells listeners
(the MCP resources layer) about each change. It polls every ~1.5 s while things happen, slows down
while nothing does, stops at a terminal status or when nobody has watched it for a while, and takes
its requests from the token's shared `RequestPacer` so that followers never exhaust the token's
upstream budget.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import (
    ApiStatusError,
    AuthenticationError,
    InvalidRequestError,
    MissingTokenError,
    MogplexError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, EventPage, RunDetail, RunEvent
from mogplex_mcp.runs.journal import token_fingerprint
from mogplex_mcp.runs.pacer import RequestPacer

logger = logging.getLogger("mogplex_mcp.runs")

_FATAL = (NotFoundError, AuthenticationError, PermissionDeniedError, InvalidRequestError, MissingTokenError)

Listener = Callable[["RunFollower", list[RunEvent], bool], Awaitable[None]]


@dataclass(frozen=True)
class FollowSettings:
    poll_interval: float = 1.5
    max_poll_interval: float = 6.0
    linger_seconds: float = 10.0
    requests_per_minute: int = 40
    max_events_per_run: int = 5_000
    max_finished_kept: int = 200


class RunFollower:
    """The shared, de-duplicated view of one run: its latest state and every event seen so far."""

    def __init__(self, run_id: str, fingerprint: str, max_events: int) -> None:
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.run: RunDetail | None = None
        self.version = 0
        self.watchers = 0
        self.last_release = 0.0
        self.error: MogplexError | None = None
        self.fatal: MogplexError | None = None
        self.window_exhausted = False
        self.dropped_events = 0
        self.ready = anyio.Event()
        self.active = False
        self._events: OrderedDict[str, RunEvent] = OrderedDict()
        self._max_events = max_events
        self._changed = anyio.Event()

    @property
    def terminal(self) -> bool:
        return self.run is not None and self.run.terminal

    @property
    def done(self) -> bool:
        """Nothing more will come: terminal, or following failed for good."""
        return self.terminal or self.fatal is not None

    def events(self) -> list[RunEvent]:
        return list(self._events.values())

    @property
    def event_count(self) -> int:
        return len(self._events)

    def merge(self, page: EventPage) -> tuple[list[RunEvent], bool]:
        """Take a fresh page; return the events not seen before and whether the status changed."""
        status_changed = self.run is None or self.run.status != page.run.status
        self.run = page.run
        self.window_exhausted = len(page.events) >= EVENTS_LIMIT_MAX
        fresh = self.add_events(page.events)
        self.error = None
        if fresh or status_changed:
            self.signal()
        return fresh, status_changed

    def add_events(self, events: list[RunEvent]) -> list[RunEvent]:
        fresh = [event for event in events if event.id not in self._events]
        for event in fresh:
            self._events[event.id] = event
        while len(self._events) > self._max_events:
            self._events.popitem(last=False)
            self.dropped_events += 1
        return fresh

    def signal(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self, since_version: int) -> None:
        """Return once `version` has moved past `since_version` (or following ended)."""
        while self.version == since_version and not (self.done or (not self.active and self.ready.is_set())):
            await self._changed.wait()


class FollowerHub:
    """Owns every follower, one per (token, run); runs their loops in the server's task group."""

    def __init__(
        self,
        task_group: TaskGroup,
        make_client: Callable[[str], MogplexClient],
        settings: FollowSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._tg = task_group
        self._make_client = make_client
        self.settings = settings or FollowSettings()
        self._clock = clock
        self._sleep = sleep
        self._followers: OrderedDict[tuple[str, str], RunFollower] = OrderedDict()
        self._pacers: dict[str, RequestPacer] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, token: str, run_id: str) -> RunFollower | None:
        return self._followers.get((token_fingerprint(token), run_id))

    def pacer(self, fingerprint: str) -> RequestPacer:
        if fingerprint not in self._pacers:
            self._pacers[fingerprint] = RequestPacer(
                self.settings.requests_per_minute, clock=self._clock, sleep=self._sleep
            )
        return self._pacers[fingerprint]

    @property
    def active_count(self) -> int:
        return sum(1 for follower in self._followers.values() if follower.active)

    @asynccontextmanager
    async def watch(self, token: str, run_id: str) -> AsyncIterator[RunFollower]:
        """Hold a follower of `run_id` for the duration of the block, starting it if needed."""
        follower = self._acquire(token, run_id)
        try:
            yield follower
        finally:
            follower.watchers -= 1
            follower.last_release = self._clock()

    def _acquire(self, token: str, run_id: str) -> RunFollower:
        key = (token_fingerprint(token), run_id)
        follower = self._followers.get(key)
        if follower is None or (follower.fatal is not None and not follower.active):
            follower = RunFollower(run_id, key[0], self.settings.max_events_per_run)
            self._followers[key] = follower
        self._followers.move_to_end(key)
        follower.watchers += 1
        if not follower.active and not follower.terminal:
            follower.active = True
            self._tg.start_soon(self._follow, follower, token, name=f"follow {run_id}")
        self._prune()
        return follower

    def _prune(self) -> None:
        idle = [key for key, f in self._followers.items() if not f.active and f.watchers == 0]
        excess = len(idle) - self.settings.max_finished_kept
        for key in idle[: max(0, excess)]:
            del self._followers[key]

    async def _follow(self, follower: RunFollower, token: str) -> None:
        interval = self.settings.poll_interval
        try:
            async with self._make_client(token) as client:
                while True:
                    changed = await self._poll_once(follower, client)
                    if follower.done or self._abandoned(follower):
                        return
                    if changed:
                        interval = self.settings.poll_interval
                    else:
                        interval = min(interval * 1.5, self.settings.max_poll_interval)
                    await self._sleep(interval)
        finally:
            follower.active = False
            follower.ready.set()
            follower.signal()

    def _abandoned(self, follower: RunFollower) -> bool:
        idle_for = self._clock() - follower.last_release
        return follower.watchers <= 0 and idle_for >= self.settings.linger_seconds

    async def _poll_once(self, follower: RunFollower, client: MogplexClient) -> bool:
        """One request; True when something changed. Errors are recorded on the follower."""
        pacer = self.pacer(follower.fingerprint)
        await pacer.acquire()
        try:
            page = await client.list_events(follower.run_id, limit=EVENTS_LIMIT_MAX)
        except RateLimitedError as exc:
            pacer.pause(exc.retry_after if exc.retry_after is not None else 60.0)
            logger.info("following %s: rate limited, pausing %s s", follower.run_id, exc.retry_after)
            return False
        except _FATAL as exc:
            follower.fatal = exc
            follower.ready.set()
            return False
        except MogplexError as exc:
            follower.error = exc
            status = exc.status if isinstance(exc, ApiStatusError) else None
            logger.info("following %s: %s (HTTP %s)", follower.run_id, type(exc).__name__, status)
            follower.ready.set()
            return False
        fresh, status_changed = follower.merge(page)
        follower.ready.set()
        if fresh or status_changed:
            for listener in list(self._listeners):
                await listener(follower, fresh, status_changed)
        return bool(fresh or status_changed)
