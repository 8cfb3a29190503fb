"""The following tools: list_run_events (paged with a cursor) and wait_for_run (bounded, with progress)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mogplex_mcp.api.errors import InvalidRequestError, MogplexError
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunDetail, RunEvent, checked_uuid
from mogplex_mcp.runs.compact import CompactLine, ProgressCompactor
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.follower import RunFollower
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.settled import needs_input, settled
from mogplex_mcp.server import guidance
from mogplex_mcp.server.compact_views import compact_event_views
from mogplex_mcp.server.errors import tool_error
from mogplex_mcp.server.outcomes import JudgedRun, judge
from mogplex_mcp.server.results import (
    RESULT_CHAR_BUDGET,
    EventsFrom,
    EventView,
    ListRunEventsResult,
    WaitForRunResult,
    fit_to_budget,
)
from mogplex_mcp.server.snapshots import RunSnapshot, load_snapshot
from mogplex_mcp.server.state import AppState, app_state, require_token, upstream
from mogplex_mcp.server.tools.definitions import READ_ONLY, RunId, tool

WAIT_EVENTS_SHOWN = 20
# How long a wait gives its follower to catch up with an afterEventId it does not hold yet.
CURSOR_CATCH_UP_SECONDS = 5.0
EVENTS_BUDGET = RESULT_CHAR_BUDGET - 3_000  # room for the run's view, the summary and the steps


def register_event_tools(server: MCPServer[Any]) -> None:
    """Add list_run_events and wait_for_run to `server`."""
    _add_list_run_events(server)
    _add_wait_for_run(server)


def _add_list_run_events(server: MCPServer[Any]) -> None:
    @tool(server, "list_run_events", "List a run's events", READ_ONLY)
    async def list_run_events(
        ctx: Context[Any, Any],
        runId: RunId,
        limit: Annotated[int, Field(ge=1, le=EVENTS_LIMIT_MAX, description="At most this many events.")] = 50,
        afterEventId: Annotated[
            str | None,
            Field(description="Cursor: return only events after this id (use nextCursor).", max_length=200),
        ] = None,
        includePayload: Annotated[
            bool, Field(description="Include each event's (cleaned, size-capped) payload.")
        ] = False,
    ) -> ListRunEventsResult:
        """List a run's events, oldest first: what the agent did (tool calls, logs, status changes).
        Page through with afterEventId = nextCursor."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        _check_run_id(runId)
        snap = await _known_events(state, token, runId)
        run, events = snap.run, snap.events
        start = _cursor_position(events, afterEventId, runId, "list_run_events")
        chosen = events[start : start + limit]
        views = fit_to_budget(
            [EventView.build(e, include_payload=includePayload, secret=token) for e in chosen], budget=EVENTS_BUDGET
        )
        shown_until = start + len(views)
        has_more = shown_until < len(events)
        cursor = views[-1].id if views else afterEventId
        exhausted = snap.window_exhausted and not has_more
        judged = await judge(state, token, snap)
        summary = _events_summary(run, len(views), start, has_more, exhausted, len(chosen) > len(views))
        return ListRunEventsResult(
            summary=f"{summary} {judged.summary}" if run.terminal else summary,
            next_steps=_events_steps(judged, runId, cursor, has_more),
            run_id=runId,
            status=judged.view.status,
            terminal=run.terminal,
            run=judged.view,
            events=views,
            next_cursor=cursor,
            has_more=has_more,
            window_exhausted=exhausted,
        )


def _add_wait_for_run(server: MCPServer[Any]) -> None:
    @tool(server, "wait_for_run", "Wait for a run", READ_ONLY)
    async def wait_for_run(
        ctx: Context[Any, Any],
        runId: RunId,
        timeoutSeconds: Annotated[
            float,
            Field(ge=1, le=50, description="Longest wait for this call (default 20 s; max 50)."),
        ] = 20.0,
        afterEventId: Annotated[
            str | None,
            Field(description="Cursor: show only events after this id (pass the last nextCursor).", max_length=200),
        ] = None,
    ) -> WaitForRunResult:
        """Wait until the run finishes or the timeout passes, whichever is first (sends a progress
        notification for each new event). If it is still running, call it again with afterEventId =
        nextCursor: chained waits show every event once (eventsFrom says where newEvents start)."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        _check_run_id(runId)
        timeout = min(timeoutSeconds, state.settings.wait_max_seconds)
        started = time.monotonic()
        if (cached := state.hub.get(token, runId)) is not None and cached.terminal:
            async with upstream("wait for the run", token, state.budget) as deadline:
                await state.confirm_token(token, deadline)  # a finished run is answered from cache
        async with state.hub.watch(token, runId) as follower:
            # A draining server (SIGTERM) ends the wait with what it has: "still running", so the caller asks again.
            with state.readiness.cut_short() as drain:
                await _follow_within(ctx, follower, afterEventId, runId, started + timeout)
        if follower.fatal is not None:
            raise tool_error(follower.fatal, "wait for the run", token=token)
        snap = _followed_view(follower, afterEventId, drained=drain.cancel_called)
        if snap is None and drain.cancel_called:
            # The drain came before this replica's follower read the run (or caught up with the caller's cursor),
            # and a handed-over follower reads nothing more here: read the run once, directly, and answer with it.
            left = max(1.0, min(state.budget, timeout - (time.monotonic() - started)))
            async with upstream("wait for the run", token, left) as deadline:
                snap = await load_snapshot(state, token, runId, deadline, fresh=True)
        waited = round(time.monotonic() - started, 1)
        if snap is None:
            reason = f" ({follower.error})" if follower.error else ""
            raise ToolError(
                f"could not get run {runId} from Mogplex within {timeout:.0f} s{reason}. "
                f"Call wait_for_run with runId {runId} again."
            )
        await state.remember(token, snap.run)
        callers = _CallerCursors(state, ctx, token, runId)
        cursor, events_from = callers.start_after(afterEventId, snap.events)
        start = _cursor_position(snap.events, cursor, runId, "wait_for_run")
        judged = await judge(state, token, snap)
        lines = snap.lines if start == 0 else None  # no cursor: the follower's lines, kept as events came
        trouble = follower.error
        result = _wait_result(judged, snap.run, trouble, snap.events[start:], waited, cursor, token, events_from, lines)
        callers.given(result.next_cursor)
        return result


async def _follow_within(
    ctx: Context[Any, Any], follower: RunFollower, cursor: str | None, run_id: str, until: float
) -> None:
    """The wait itself: the first read, the caller's cursor, then the run's progress until done or `until`."""
    with anyio.move_on_after(until - time.monotonic()):
        await follower.ready.wait()
    if follower.run is not None and follower.fatal is None:
        await _until_cursor_known(follower, cursor)
        _cursor_position(follower.events(), cursor, run_id, "wait_for_run")
    await _follow_until_done(ctx, follower, until - time.monotonic(), follower.event_count)
    if follower.terminal and follower.active:  # finished: let a backfill of its last events complete
        with anyio.move_on_after(max(0.0, until - time.monotonic())):
            await follower.wait_stopped()


def _followed_view(follower: RunFollower, cursor: str | None, *, drained: bool) -> RunSnapshot | None:
    """What the follower knows of the run; None when it never read it, or (cut short by a drain) when it has not
    caught up with the caller's cursor yet — a cursor it lacks then says nothing about the caller's mistake."""
    if follower.run is None:
        return None
    if drained and cursor is not None and all(event.id != cursor for event in follower.events()):
        return None
    return RunSnapshot.of(follower, follower.run)


class _CallerCursors:
    """What this caller's earlier waits on a run gave it, so a wait without afterEventId repeats nothing.

    Kept per client connection (handshake era, stdio, in-memory); a caller with no connection to key on
    (stateless HTTP) gets the run's events from its start, and the result says so (`eventsFrom`).
    """

    MAX_RUNS = 200

    def __init__(self, state: AppState, ctx: Context[Any, Any], token: str, run_id: str) -> None:
        connection = getattr(ctx.session, "_connection", None)  # the SDK's per-connection object, if any
        self.cursors = state.wait_cursors.setdefault(connection, {}) if connection is not None else None
        self.key = (token_fingerprint(token), run_id)

    def start_after(self, given: str | None, events: list[RunEvent]) -> tuple[str | None, EventsFrom]:
        if given is not None:
            return given, "afterEventId"
        last = self.cursors.get(self.key) if self.cursors is not None else None
        if last is not None and any(event.id == last for event in events):
            return last, "yourLastWait"
        return None, "runStart"

    def given(self, cursor: str | None) -> None:
        if self.cursors is None or cursor is None:
            return
        if len(self.cursors) >= self.MAX_RUNS and self.key not in self.cursors:
            self.cursors.clear()
        self.cursors[self.key] = cursor


async def _until_cursor_known(follower: RunFollower, cursor: str | None) -> None:
    """A replica that has just begun following a run (from another replica's feed, say after a restart moved
    the caller here) may not hold the caller's cursor yet: let it catch up a moment before calling it wrong."""
    if cursor is None:
        return
    with anyio.move_on_after(CURSOR_CATCH_UP_SECONDS):
        while follower.active and not follower.done and all(event.id != cursor for event in follower.events()):
            await follower.wait_changed(follower.version)


def _cursor_position(events: list[RunEvent], cursor: str | None, run_id: str, tool_name: str) -> int:
    """Where the events after `cursor` start; a cursor that names no event of the run is the caller's error."""
    if cursor is None:
        return 0
    position = next((index for index, event in enumerate(events) if event.id == cursor), None)
    if position is None:
        raise ToolError(
            f"invalid arguments: afterEventId {clean_text(cursor)[:80]!r} is not an event of run {run_id}. Pass "
            f"the nextCursor of an earlier {tool_name} call, or omit afterEventId to start at the first event."
        )
    return position + 1


def _check_run_id(run_id: str) -> None:
    """Reject a bad runId before it reaches the follower hub (the client checks its own calls)."""
    try:
        checked_uuid(run_id, "runId", "the runId that start_run returned")
    except InvalidRequestError as exc:
        raise tool_error(exc, "read the run") from None


async def _known_events(state: AppState, token: str, run_id: str) -> RunSnapshot:
    """Every event known for the run: the follower's when current, else the API's (plus the stream)."""
    async with upstream("list the run's events", token, state.budget) as deadline:
        return await load_snapshot(state, token, run_id, deadline)


async def _follow_until_done(ctx: Context[Any, Any], follower: RunFollower, wait_seconds: float, seen: int) -> None:
    """Block until the run is done or `wait_seconds` pass, reporting each new event as progress."""
    reported = seen
    ticks = 0
    compactor = ProgressCompactor()
    last_status = follower.run.status if follower.run else None
    with anyio.move_on_after(wait_seconds):
        while True:
            version = follower.version
            status = follower.run.status if follower.run else None
            if status != last_status and status is not None:
                ticks += 1
                await ctx.report_progress(ticks, None, f"status: {status}")
                last_status = status
            fresh = follower.events_from(reported)  # only what is new: a wake costs what it reports
            reported = follower.event_count
            for line in compactor.lines(fresh):
                ticks += 1
                await ctx.report_progress(ticks, None, _progress_line(follower, line))
            if settled(follower):  # over, needs a person's input in Mogplex, or no longer followable
                return
            await follower.wait_changed(version)


def _progress_line(follower: RunFollower, line: str) -> str:
    status = follower.run.status if follower.run else "?"
    return clean_text(f"[{status}] " + shorten(line, 160))


def _wait_result(
    judged: JudgedRun,
    run: RunDetail,
    trouble_seen: MogplexError | None,
    after: list[RunEvent],
    waited: float,
    cursor: str | None,
    token: str,
    events_from: EventsFrom,
    lines: list[CompactLine] | None,
) -> WaitForRunResult:
    # Compact: a tool's start and finish share a view, streamed words form one; a view's id is its last event's.
    shown = fit_to_budget(compact_event_views(after, token, WAIT_EVENTS_SHOWN, lines=lines), budget=8_000)
    next_cursor = shown[-1].id if shown else cursor
    ids = [event.id for event in after]
    remaining = len(after) - (ids.index(next_cursor) + 1 if next_cursor in ids else 0)
    outcome = judged.outcome
    if outcome.terminal or needs_input(run):
        summary = judged.summary
    else:
        trouble = f" (Mogplex is having trouble: {trouble_seen})" if trouble_seen else ""
        summary = f"Still going after {waited:.0f} s: {judged.summary[:-1]}{trouble}."
    steps = guidance.next_steps(outcome, caller="wait_for_run", cursor=next_cursor)
    if events_from == "runStart" and after:
        summary += " Events are shown from the run's start (pass afterEventId = nextCursor to see only new ones)."
    if remaining:
        summary += f" Showing {len(shown)} event(s); {remaining} more follow after nextCursor."
        if outcome.terminal:
            steps.append(f"list_run_events with runId {outcome.run_id} and afterEventId {next_cursor} shows the rest.")
    return WaitForRunResult(
        summary=clean_text(summary, token),
        next_steps=steps,
        run=judged.view,
        finished=outcome.terminal,
        waited_seconds=waited,
        new_events=shown,
        new_event_count=len(after),
        events_from=events_from,
        next_cursor=next_cursor,
    )


def _events_summary(run: RunDetail, shown: int, start: int, has_more: bool, exhausted: bool, cut_for_size: bool) -> str:
    text = f"{shown} event(s) of run {run.run_id} (status {run.status})"
    if start:
        text += f", after the first {start}"
    if cut_for_size:
        text += "; cut short to keep this result small"
    if has_more:
        text += "; more follow: page on with afterEventId = nextCursor"
    if exhausted:
        text += (
            "; this is the end of what Mogplex exposes: its events API returns only the first 200 events "
            "of a run, so later events cannot be listed"
        )
    return text + "."


def _events_steps(judged: JudgedRun, run_id: str, cursor: str | None, has_more: bool) -> list[str]:
    if has_more:
        page = [f"Call list_run_events with runId {run_id} and afterEventId {cursor} for the next page."]
        finished = guidance.next_steps(judged.outcome, caller="list_run_events") if judged.outcome.terminal else []
        return page + finished
    if not judged.outcome.terminal:
        return guidance.next_steps(judged.outcome, caller="list_run_events", cursor=cursor)
    return guidance.next_steps(judged.outcome, caller="list_run_events")
