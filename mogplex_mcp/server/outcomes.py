"""A run's one outcome and view, from a snapshot plus what this server noted — the only place both are built."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from mogplex_mcp.api.errors import MogplexError
from mogplex_mcp.api.models import RunDetail
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.outcome_recorder import outcome_facts
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.runs.views import Coverage, RunOutcome, derive_outcome
from mogplex_mcp.server.results import RunView, mogplex_app_url
from mogplex_mcp.server.snapshots import RunSnapshot, from_follower, load_snapshot, settled_snapshot
from mogplex_mcp.server.state import AppState

RECORDED_MAX = 2_000
RETRY_SECONDS = 0.05


@dataclass(frozen=True)
class JudgedRun:
    """What every tool and resource says about one run: the outcome, the view and the summary line."""

    outcome: RunOutcome
    view: RunView
    summary: str


def judge_only(state: AppState, token: str, snap: RunSnapshot) -> JudgedRun:
    """The outcome of `snap` with this server's notes (rootDirectory, a cancel it asked for), not recorded."""
    notes = state.notes.get(token_fingerprint(token), snap.run.run_id)
    coverage = Coverage(saw_last_events=snap.saw_last_events, cancel_requested=notes.cancel_requested)
    outcome = derive_outcome(snap.run, snap.events, coverage)
    link = mogplex_app_url(state.settings.base_url)
    view = RunView.build(snap.run, outcome, token, root_directory=notes.root_directory, mogplex_url=link)
    summary = clean_text(f"Run {snap.run.run_id} {outcome.sentence()}.", token)
    return JudgedRun(outcome, view, summary)


async def judge(state: AppState, token: str, snap: RunSnapshot) -> JudgedRun:
    """The outcome of `snap`, recorded in the runs list when the run is over: whatever path saw a finished
    run (get_run, cancel_run, a wait, a resource read, a replayed start), list_runs on any replica and after
    a restart then says what that answer said."""
    judged = judge_only(state, token, snap)
    await record_outcome(state, token, judged.outcome)
    return judged


async def record_outcome(state: AppState, token: str, outcome: RunOutcome) -> None:
    """Write a finished run's outcome to the runs list (once per process and outcome: reads repeat)."""
    facts = outcome_facts(outcome)
    if facts is None:
        return
    key = (token_fingerprint(token), outcome.run_id)
    if state.recorded.get(key) == facts:
        return
    try:
        written = await state.remember_facts(token, outcome.run_id, facts)
        if not written:  # the journal was busy: once more after a moment, else the next sighting writes it
            await anyio.sleep(RETRY_SECONDS)
            written = await state.remember_facts(token, outcome.run_id, facts)
    except StoreUnavailableError:  # bookkeeping: the answer itself stands; the next sighting records it
        return
    if not written:
        return
    if len(state.recorded) >= RECORDED_MAX:
        state.recorded.clear()
    state.recorded[key] = facts


async def snapshot_of(state: AppState, token: str, run: RunDetail, deadline: float) -> RunSnapshot:
    """Everything known of a run just read (GET, start, cancel): a finished one's events are looked up.

    The follower's events when it has any; for a finished run without them, one events page (plus the
    stream's backfill where there is one), so its pull request is reported, never guessed away. If that
    lookup fails, the run is still reported, with its delivery unknown.
    """
    follower = state.hub.get(token, run.run_id)
    cached = from_follower(follower)
    if follower is not None and cached is not None and cached.run.terminal:
        return await settled_snapshot(follower, deadline)
    if cached is not None and not run.terminal:
        return RunSnapshot(run, cached.events, cached.window_exhausted, live=True)
    # A finished run's outcome and an asking run's question are in its events: look them up.
    if run.terminal or run.status == "awaiting_input":
        try:
            return await load_snapshot(state, token, run.run_id, deadline, fresh=True)
        except MogplexError:  # the run is known either way: report it, its delivery unknown (never "no PR")
            return RunSnapshot(run, [], window_exhausted=False, saw_last_events=False)
    events = follower.events() if follower is not None else []
    return RunSnapshot(run, events, False)
