"""A run and every event known for it — from its follower when current, else the API (plus the stream).

Shared by `list_run_events` and the event resources, so both see the same events: past the API's
first 200 where the upstream streams, and honestly marked as cut where it does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, EventPage, RunDetail, RunEvent
from mogplex_mcp.runs.compact import CompactLine, compact
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.server.state import AppState


@dataclass(frozen=True)
class RunSnapshot:
    """A run and the events known for it, from a follower or one upstream page."""

    run: RunDetail
    events: list[RunEvent]
    window_exhausted: bool
    dropped_events: int = 0
    live: bool = False
    # The run's last events are among `events` (False: cut at the API's window, or a backfill still running).
    saw_last_events: bool = True
    # The events' compact lines, when a follower kept them (built as events arrived): None, build on demand.
    lines: list[CompactLine] | None = None

    def compact_lines(self) -> list[CompactLine]:
        return self.lines if self.lines is not None else compact(self.events)

    @classmethod
    def of(cls, follower: RunFollower, run: RunDetail) -> RunSnapshot:
        return cls(
            run,
            follower.events(),
            follower.window_exhausted,
            follower.dropped_events,
            follower.active,
            saw_last_events=follower.saw_the_end and not follower.window_exhausted,
            lines=follower.compactor.lines(),
        )

    @classmethod
    def of_page(cls, page: EventPage) -> RunSnapshot:
        full = len(page.events) >= EVENTS_LIMIT_MAX
        return cls(page.run, page.events, full, saw_last_events=not full)


def from_follower(follower: RunFollower | None) -> RunSnapshot | None:
    """A follower's view, when it is current: still following, or the run is over."""
    if follower is None or follower.run is None or not (follower.active or follower.terminal):
        return None
    return RunSnapshot.of(follower, follower.run)


async def settled_snapshot(follower: RunFollower, deadline: float) -> RunSnapshot:
    """A finished run's follower, once it has stopped (a backfill of its last events may still be running)."""
    if follower.active:
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            await follower.wait_stopped()
    run = follower.run
    if run is None:  # only a follower that has seen its run is passed in
        raise RuntimeError(f"follower of {follower.run_id} has no run")
    return RunSnapshot.of(follower, run)


async def load_snapshot(
    state: AppState, token: str, run_id: str, deadline: float, *, fresh: bool = False
) -> RunSnapshot:
    """The freshest, fullest view of a run this server can give (`fresh`: skip the follower's cache).

    Raises the client's errors.
    """
    follower = None if fresh else state.hub.get(token, run_id)
    cached = from_follower(follower)
    if follower is not None and cached is not None:
        await state.confirm_token(token, deadline)  # cached: only for a token upstream accepted recently
        return await settled_snapshot(follower, deadline) if cached.run.terminal else cached
    async with state.client(token) as api:
        page = await api.list_events(run_id, limit=EVENTS_LIMIT_MAX, deadline=deadline)
        base_url = api.base_url
    await state.remember(token, page.run)
    snap = RunSnapshot.of_page(page)
    if snap.window_exhausted and page.run.terminal and state.hub.can_stream(base_url):
        snap = await _backfill(state, token, run_id, deadline) or snap
    return snap


async def _backfill(state: AppState, token: str, run_id: str, deadline: float) -> RunSnapshot | None:
    """A finished run with more than 200 events: let a follower replay the rest from the stream."""
    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
        async with state.hub.watch(token, run_id) as follower:
            await follower.wait_stopped()
            return from_follower(follower)
    return None
