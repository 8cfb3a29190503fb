"""The state of one followed run: its latest detail and every event seen, de-duplicated, with change signals.

`FollowerHub` (follower.py) owns these and feeds them from polls or the event stream; waits and
subscriptions read them and wait on their change signal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice

import anyio

from mogplex_mcp.api.errors import MogplexError
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, EventPage, RunDetail, RunEvent
from mogplex_mcp.api.stream import StreamItem
from mogplex_mcp.runs.compact import Compactor
from mogplex_mcp.runs.slim import slim_event

# Event types after which the stream closes; the run's own status follows with the next poll.
TERMINAL_EVENT_TYPES = frozenset({"finished", "failed", "cancelled"})


@dataclass(frozen=True)
class FollowSettings:
    poll_interval: float = 1.5
    max_poll_interval: float = 6.0
    linger_seconds: float = 10.0
    requests_per_minute: int = 40
    max_events_per_run: int = 5_000
    max_finished_kept: int = 200
    # Events kept, across all followers nobody watches any more: a cache, so it is bounded by size, not
    # only by count (a parsed event costs ~2 KB; 2,000 ≈ 4 MB). Re-reading a dropped run re-fetches it.
    max_idle_events: int = 2_000
    # Bytes (estimated: characters of text, runs/slim.py) of events kept per run, and by all followers together.
    # Events are cut to what views show on arrival, so these hold whatever the upstream sends.
    max_bytes_per_run: int = 8 * 1024 * 1024
    max_cache_bytes: int = 64 * 1024 * 1024
    use_stream: bool = True
    # A stream silent this long is reopened (production sends no heartbeats): a cheap status check.
    stream_idle_seconds: float = 30.0


# However full the whole cache is, a run being followed keeps at least its newest events up to this size.
MIN_BYTES_KEPT = 256 * 1024


class EventCache:
    """The bytes of events every follower of a hub holds together, against one budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0

    @property
    def over(self) -> bool:
        return self.bytes > self.max_bytes


class RunFollower:
    """The shared, de-duplicated view of one run: its latest state and every event seen so far."""

    def __init__(
        self,
        run_id: str,
        fingerprint: str,
        max_events: int,
        *,
        max_bytes: int = FollowSettings.max_bytes_per_run,
        cache: EventCache | None = None,
    ) -> None:
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
        # True once an event stream carries this run: events past the first 200 then arrive too.
        self.streaming = False
        self.saw_terminal_event = False
        self.stream_refused = False
        # After a stream failed (oversized event, dropped, no free slot): no new stream before this time.
        self.stream_failures = 0
        self.stream_resume_at = 0.0
        self._page_full = False
        # Oldest first; `_ids` maps an id to its position among every event ever added (1-based), so a
        # cursor is found in O(1) and the events after it are sliced without a scan of the rest.
        self._events: deque[RunEvent] = deque()
        self._ids: dict[str, int] = {}
        self._added = 0
        self._max_events = max_events
        self._sizes: deque[int] = deque()
        self.bytes = 0
        self._max_bytes = max_bytes
        self._cache = cache or EventCache(FollowSettings.max_cache_bytes)
        # The compact view of the events kept, built as they arrive: a view costs what it shows, not the run.
        self.compactor = Compactor()
        self._changed = anyio.Event()

    @property
    def terminal(self) -> bool:
        return self.run is not None and self.run.terminal

    @property
    def done(self) -> bool:
        """Nothing more will come: terminal, or following failed for good."""
        return self.terminal or self.fatal is not None

    def events(self) -> list[RunEvent]:
        return list(self._events)

    @property
    def saw_the_end(self) -> bool:
        """The run's last events are in hand: its events page held them all, or the stream brought the end."""
        return not self._page_full or self.saw_terminal_event

    @property
    def event_count(self) -> int:
        return len(self._events)

    @property
    def last_event_id(self) -> str | None:
        return self._events[-1].id if self._events else None

    def events_from(self, index: int) -> list[RunEvent]:
        """The events kept from position `index` on (0: all of them)."""
        return list(islice(self._events, max(0, index), None))

    def position_after(self, event_id: str) -> int | None:
        """Where the events after `event_id` start among those kept; None when no kept event has that id."""
        seq = self._ids.get(event_id)
        return None if seq is None else seq - (self._added - len(self._events))

    def merge(self, page: EventPage) -> tuple[list[RunEvent], bool]:
        """Take a fresh page; return the events not seen before and whether the status changed."""
        status_changed = self.run is None or self.run.status != page.run.status
        self.run = page.run
        self._page_full = len(page.events) >= EVENTS_LIMIT_MAX
        self._update_window()
        # Once the cache has dropped its oldest events, a page (always the oldest 200) holds nothing new.
        fresh = self.add_events(page.events) if not self.dropped_events else []
        self.error = None
        if fresh or status_changed:
            self.signal()
        return fresh, status_changed

    def take(self, item: StreamItem) -> tuple[list[RunEvent], bool]:
        """Take one item of the event stream (the run's state, or an event)."""
        if isinstance(item, RunDetail):
            status_changed = self.run is None or self.run.status != item.status
            self.run = item
            fresh: list[RunEvent] = []
        else:
            fresh = self.add_events([item])
            status_changed = self._status_from(item) if fresh else False
            self.saw_terminal_event = self.saw_terminal_event or item.type in TERMINAL_EVENT_TYPES
        self.error = None
        if fresh or status_changed:
            self.signal()
        return fresh, status_changed

    def absorb(
        self, run: RunDetail | None, events: list[RunEvent], window_exhausted: bool
    ) -> tuple[list[RunEvent], bool]:
        """Take what another replica's follower of this run saw (runs/shared_follow.py): dedupe by id."""
        status_changed = run is not None and (self.run is None or self.run.status != run.status)
        if run is not None:
            self.run = run
            self._page_full = window_exhausted
            self._update_window()
            self.ready.set()
        fresh = self.add_events(events)
        self.saw_terminal_event = self.saw_terminal_event or any(e.type in TERMINAL_EVENT_TYPES for e in fresh)
        self.error = None
        if fresh or status_changed:
            self.signal()
        return fresh, status_changed

    def set_streaming(self, streaming: bool) -> None:
        self.streaming = streaming
        self._update_window()

    def add_events(self, events: list[RunEvent]) -> list[RunEvent]:
        """Keep the events not seen before, cut to what views show (runs/slim.py); return them as kept."""
        fresh: list[RunEvent] = []
        for raw in events:
            if raw.id in self._ids:
                continue
            event, size = slim_event(raw)
            self._added += 1
            self._ids[event.id] = self._added
            self._events.append(event)
            self._sizes.append(size)
            self.bytes += size
            self._cache.bytes += size
            self.compactor.add(event)
            fresh.append(event)
        if self._over_budget():
            while self._over_budget():
                del self._ids[self._events.popleft().id]
                size = self._sizes.popleft()
                self.bytes -= size
                self._cache.bytes -= size
                self.dropped_events += 1
            self.compactor.trim(self._added - len(self._events) + 1)
        return fresh

    def _over_budget(self) -> bool:
        if len(self._events) <= 1:
            return False
        if len(self._events) > self._max_events or self.bytes > self._max_bytes:
            return True
        return self._cache.over and self.bytes > MIN_BYTES_KEPT

    def release(self) -> None:
        """Give this follower's bytes back to the cache (it is being forgotten)."""
        self._cache.bytes -= self.bytes
        self.bytes = 0
        self._events.clear()
        self._sizes.clear()
        self._ids.clear()
        self.compactor = Compactor()

    def signal(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self, since_version: int) -> None:
        """Return once `version` has moved past `since_version` (or following ended)."""
        while self.version == since_version and not (self.done or (not self.active and self.ready.is_set())):
            await self._changed.wait()

    async def wait_stopped(self) -> None:
        """Return once the follower's loop has ended (a finished run may still be backfilling)."""
        while self.active:
            await self._changed.wait()

    def _update_window(self) -> None:
        self.window_exhausted = self._page_full and not self.streaming

    def _status_from(self, event: RunEvent) -> bool:
        """A non-terminal status change announced by a `status_changed` event (the final one comes by poll)."""
        new = event.payload.get("to") if event.type == "status_changed" else None
        if self.run is None or not isinstance(new, str) or new == self.run.status:
            return False
        if self.run.terminal:
            return False
        self.run = self.run.model_copy(update={"status": new})
        return True
