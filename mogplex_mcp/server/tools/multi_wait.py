"""wait_for_runs' work: watch several runs through their shared followers until one (any) or all settle.

Each run is held through `hub.watch`, so N callers waiting on the same M runs share M followers (and the
token's pacer); this module only waits on their change signals and tells progress, run by run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp.server.mcpserver import Context

from mogplex_mcp.api.errors import MogplexError
from mogplex_mcp.runs.compact import ProgressCompactor
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.settled import needs_input, settled, wait_any_changed
from mogplex_mcp.server.errors import tool_error
from mogplex_mcp.server.outcomes import judge
from mogplex_mcp.server.snapshots import RunSnapshot, load_snapshot
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.tools.orchestration_results import WaitedRun, WaitForRunsResult, WaitMode

FIRST_READ_SECONDS = 3.0


class _Progress:
    """Progress notifications across the set: each status change and each (compacted) new event."""

    def __init__(self, ctx: Context[Any, Any], followers: Sequence[RunFollower], token: str) -> None:
        self.ctx = ctx
        self.token = token
        self.ticks = 0
        self.statuses = [f.run.status if f.run else None for f in followers]
        self.reported = [f.event_count for f in followers]
        self.compactors = [ProgressCompactor() for _ in followers]

    async def tell(self, index: int, follower: RunFollower) -> None:
        label = follower.run_id[:8]
        status = follower.run.status if follower.run else None
        if status is not None and status != self.statuses[index]:
            self.statuses[index] = status
            await self._say(f"{label} status: {status}")
        fresh = follower.events_from(self.reported[index])  # only what is new since the last wake
        self.reported[index] = follower.event_count
        for line in self.compactors[index].lines(fresh):
            await self._say(f"{label} [{status or '?'}] {shorten(line, 160)}")

    async def _say(self, message: str) -> None:
        self.ticks += 1
        await self.ctx.report_progress(self.ticks, None, clean_text(message, self.token))


def unreadable(follower: RunFollower) -> bool:
    """Following this run failed for good (404, 401, …): it is reported, never counted as settled."""
    return follower.fatal is not None


def condition_met(mode: WaitMode, followers: Sequence[RunFollower]) -> bool:
    """any: one readable run settled; all: every readable run did. With none readable, nothing is left to wait on."""
    readable = [follower for follower in followers if not unreadable(follower)]
    if not readable:
        return True
    check = any if mode == "any" else all
    return check(settled(follower) for follower in readable)


async def wait_for_runs(
    ctx: Context[Any, Any], state: AppState, token: str, run_ids: Sequence[str], mode: WaitMode, wait_seconds: float
) -> WaitForRunsResult:
    """Hold a follower per run, wait until the mode's condition holds or `wait_seconds` pass, then report."""
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        followers = [await stack.enter_async_context(state.hub.watch(token, run_id)) for run_id in run_ids]
        known = [{event.id for event in follower.events()} for follower in followers]
        progress = _Progress(ctx, followers, token)
        done = False
        with anyio.move_on_after(wait_seconds), state.readiness.cut_short() as drain:  # a draining server answers now
            while True:
                versions = [follower.version for follower in followers]
                for index, follower in enumerate(followers):
                    await progress.tell(index, follower)
                if done := condition_met(mode, followers):
                    break
                await wait_any_changed(followers, versions)
        read: dict[str, RunSnapshot] = {}
        if drain.cancel_called:
            read = await _read_directly(state, token, followers)
        else:
            # A run not read yet when the condition was met (a wait that returns at once) gets a moment to be
            # read, so it is reported as what it is (running, or an id that cannot be read), not "not read yet".
            left = wait_seconds - (time.monotonic() - started)
            with anyio.move_on_after(min(FIRST_READ_SECONDS, max(0.0, left))):
                for follower in followers:
                    await follower.ready.wait()
        waited = round(time.monotonic() - started, 1)
        runs = [
            await _waited(state, token, follower, seen, read.get(follower.run_id))
            for follower, seen in zip(followers, known, strict=True)
        ]
    return _result(mode, done, waited, runs, token, drained=drain.cancel_called)


async def _read_directly(state: AppState, token: str, followers: Sequence[RunFollower]) -> dict[str, RunSnapshot]:
    """Cut short by a drain: the runs this replica's followers never read (a handed-over follower reads nothing
    more here) are read once, directly, so they are reported as what they are; one that cannot be read stays
    "not read yet"."""
    read: dict[str, RunSnapshot] = {}
    deadline = time.monotonic() + state.budget
    for follower in followers:
        if follower.run is not None or follower.fatal is not None or time.monotonic() >= deadline:
            continue
        with anyio.move_on_after(deadline - time.monotonic() + 1.0), contextlib.suppress(MogplexError):
            read[follower.run_id] = await load_snapshot(state, token, follower.run_id, deadline, fresh=True)
    return read


async def _waited(
    state: AppState, token: str, follower: RunFollower, seen: set[str], direct: RunSnapshot | None = None
) -> WaitedRun:
    events = direct.events if direct is not None else follower.events()
    new_count = sum(1 for event in events if event.id not in seen)
    cursor = events[-1].id if direct is not None and events else follower.last_event_id
    run = direct.run if direct is not None else follower.run
    if run is None:
        if follower.fatal is not None:
            why = str(tool_error(follower.fatal, "follow the run", token=token))
        else:
            reason = f" ({clean_text(str(follower.error), token)})" if follower.error else ""
            why = f"its status was not read from Mogplex within this wait{reason}; wait again to read it"
        return WaitedRun(
            run_id=follower.run_id,
            status=None,
            terminal=False,
            needs_input=False,
            summary=f"Run {follower.run_id}: {why}",
            new_event_count=new_count,
            cursor=cursor,
            unreadable_reason=why if follower.fatal is not None else None,
        )
    await state.remember(token, run)
    judged = await judge(state, token, direct if direct is not None else RunSnapshot.of(follower, run))
    view = judged.view
    return WaitedRun(
        run_id=run.run_id,
        status=run.status,
        terminal=run.terminal,
        needs_input=needs_input(run),
        summary=judged.summary,
        working_branch=view.working_branch,
        delivered=view.delivered,
        pull_request_url=view.pull_request_url,
        code_changed=view.code_changed,
        changed_files=view.changed_files,
        changed_files_total=view.changed_files_total,
        final_message=view.final_message,
        pending_question=view.pending_question,
        mogplex_url=view.mogplex_url,
        error=view.error,
        new_event_count=new_count,
        cursor=cursor,
    )


def _result(
    mode: WaitMode, done: bool, waited: float, runs: list[WaitedRun], token: str, *, drained: bool = False
) -> WaitForRunsResult:
    finished = [run.run_id for run in runs if run.terminal]
    asking = [run.run_id for run in runs if run.needs_input]
    bad = [run for run in runs if run.unreadable_reason is not None]
    unread = [run.run_id for run in runs if run.status is None and run.unreadable_reason is None]
    still = [run.run_id for run in runs if run.run_id not in {*finished, *asking, *(r.run_id for r in bad)}]
    parts = [f"{len(finished)} finished"] if finished else []
    if asking:
        parts.append(f"{len(asking)} need a person's input in Mogplex")
    if still:
        running = len(still) - len(unread)
        parts += [f"{running} still running"] if running else []
        parts += [f"{len(unread)} not read from Mogplex yet"] if unread else []
    if bad:
        parts.append(f"{len(bad)} could not be read (see unreadable; not waited on)")
    head = "" if done or not still else f"Timeout after {waited:.0f} s: "
    if head and drained:  # not the caller's timeout: this replica is shutting down, the next wait goes elsewhere
        head = f"Ended after {waited:.0f} s (this server is restarting): "
    summary = f"{head}{', '.join(parts)} (of {len(runs)})."
    return WaitForRunsResult(
        summary=clean_text(summary, token),
        next_steps=_next_steps(finished, asking, still, bad),
        mode=mode,
        done=done,
        waited_seconds=waited,
        runs=runs,
        finished=finished,
        needs_input=asking,
        still_running=still,
        unreadable=[run.run_id for run in bad],
    )


def _next_steps(finished: list[str], asking: list[str], still: list[str], bad: list[WaitedRun]) -> list[str]:
    steps: list[str] = []
    if finished:
        steps.append(
            "Report each finished run's outcome (pullRequestUrl, changedFiles, finalMessage) to the user; "
            "continue_run sends a follow-up on a finished run's branch."
        )
    if asking:
        steps.append(
            "Tell the user each run in needsInput waits for their answer in Mogplex (its pendingQuestion says "
            "what the agent asked, mogplexUrl where to answer); waiting again does not help until they answer."
        )
    if still:
        ids = ", ".join(still)
        steps.append(f"Call wait_for_runs again with only the runs still running: {ids}.")
    for run in bad:
        steps.append(
            f"Run {run.run_id} could not be read, so it was not waited on: check the id with list_runs (it lists "
            "the runs this server knows) or get_run, and leave it out of the next wait."
        )
    return steps
