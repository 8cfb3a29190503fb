"""list_runs' work: a page of the journal's known runs, active ones refreshed within the token's budget.

Statuses come, in order of preference, from a follower watching the run (live), from the journal when the
run is finished (final: it never changes), or from one fresh read per active run — at most
`settings.list_refresh_max` reads, and only while the token's pacer has room, so listing many runs never
costs one upstream call per run. What is not refreshed is shown as remembered, with when it was seen.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import anyio

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import MogplexError
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunDetail, RunEvent, is_terminal
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.review import final_message
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.settled import needs_input
from mogplex_mcp.runs.store import KnownRun, RunsQuery
from mogplex_mcp.runs.views import Coverage, Delivered, RunOutcome, derive_outcome
from mogplex_mcp.server.outcomes import judge
from mogplex_mcp.server.results import RESULT_CHAR_BUDGET, mogplex_app_url, question_text
from mogplex_mcp.server.snapshots import RunSnapshot
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.tools.orchestration_results import ListedRun, StatusSource

TITLE_CHARS = 80
LIST_BUDGET = RESULT_CHAR_BUDGET - 2_000  # characters of rows per page
LIST_MESSAGE_CHARS = 160


class BadCursor(ValueError):
    """A cursor list_runs did not give out."""


@dataclass
class _Seen:
    """One run of the page: the journal's row, plus what a follower or a refresh says now."""

    known: KnownRun
    source: StatusSource
    run: RunDetail | None = None
    events: list[RunEvent] | None = None
    as_of: float | None = None
    saw_last_events: bool = True  # False: the events stop at the API's window with nothing past it


@dataclass(frozen=True)
class RunPage:
    runs: list[ListedRun]
    next_cursor: str | None
    refreshed: int
    not_refreshed: int
    cut_for_size: bool = False
    # Under a status filter: rows whose status could not be confirmed (not refreshed within the budget), and
    # how many rows the filter's stored status matched but a fresh look showed no longer do.
    unconfirmed: list[ListedRun] = dataclasses.field(default_factory=list)
    moved: int = 0
    unchecked: int = 0  # "finished": rows last seen active that could not be refreshed (may have finished)


def encode_cursor(known: KnownRun) -> str:
    return base64.urlsafe_b64encode(f"{known.first_seen!r}:{known.position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        first_seen, position = raw.split(":")
        return float(first_seen), int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor is not one list_runs gave out") from None


async def list_page(state: AppState, token: str, query: RunsQuery) -> RunPage:
    """The page `query` names, freshest statuses first-hand where the budget allows.

    Under a status filter the stored status only picks candidates: a row is filed under the filter when
    its status is confirmed (followed, finished, or refreshed for this call) and matches. Under "active", a
    row that could not be refreshed goes under `unconfirmed` with its age, never under the filter's answer;
    under "finished", rows last seen active are candidates too (they may have finished since): those that
    could not be refreshed are counted as unchecked.
    """
    fingerprint = token_fingerprint(token)
    stored = None if query.terminal else query.terminal  # "finished" also looks at rows last seen active
    rows = await state.known_runs.runs_page(
        fingerprint, RunsQuery(query.limit + 1, query.before, query.repo_id, stored)
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    seen = [_from_follower_or_journal(state, token, known) for known in page]
    stale = [item for item in seen if item.source == "remembered"]
    refreshed = await _refresh(state, token, stale[: state.settings.list_refresh_max])
    link = mogplex_app_url(state.settings.base_url)
    filed: dict[_Filing, list[ListedRun]] = {"runs": [], "unconfirmed": [], "moved": [], "unchecked": [], "other": []}
    used = consumed = 0
    for item in seen:
        listed = _listed(item, token, link)
        size = len(listed.model_dump_json(by_alias=True)) + 2
        if used + size > LIST_BUDGET:  # cut to keep the result small; the cursor resumes after the last row
            break
        consumed += 1
        where = _filing(item, listed, query.terminal)
        filed[where].append(listed)
        used += size if where in ("runs", "unconfirmed") else 0
    cut = consumed < len(seen)
    last = page[consumed - 1] if consumed else None
    return RunPage(
        runs=filed["runs"],
        next_cursor=encode_cursor(last) if last is not None and (more or cut) else None,
        refreshed=refreshed,
        not_refreshed=len(stale) - refreshed,
        cut_for_size=cut,
        unconfirmed=filed["unconfirmed"],
        moved=len(filed["moved"]),
        unchecked=len(filed["unchecked"]),
    )


_Filing = Literal["runs", "unconfirmed", "moved", "unchecked", "other"]


def _filing(item: _Seen, listed: ListedRun, terminal: bool | None) -> _Filing:
    """Where a row goes under the filter (`terminal`: True finished, False active, None all)."""
    if terminal is None:
        return "runs"
    if item.source == "remembered":  # its status now is not known
        return "unconfirmed" if terminal is False else "unchecked"
    if listed.terminal == terminal:
        return "runs"
    return "moved" if terminal is False else "other"  # stored as active, finished since / still active


def _from_follower_or_journal(state: AppState, token: str, known: KnownRun) -> _Seen:
    follower = state.hub.get(token, known.run_id)
    if follower is not None and follower.run is not None and (follower.active or follower.terminal):
        source: StatusSource = "final" if follower.terminal else "live"
        saw_last = follower.saw_the_end and not follower.window_exhausted
        return _Seen(known, source, follower.run, follower.events(), time.time(), saw_last)
    if known.status is not None and is_terminal(known.status):
        return _Seen(known, "final", as_of=known.last_seen)
    return _Seen(known, "remembered", as_of=known.last_seen)


async def _refresh(state: AppState, token: str, items: list[_Seen]) -> int:
    """Read each run once, side by side, while the token's pacer has room; returns how many were read."""
    pacer = state.hub.pacer(token_fingerprint(token))
    chosen: list[_Seen] = []
    for item in items:
        if pacer.delay_needed() > 0:
            break
        await pacer.acquire()
        chosen.append(item)
    deadline = time.monotonic() + state.budget
    async with state.client(token) as api, anyio.create_task_group() as tg:
        for item in chosen:
            tg.start_soon(_read_one, state, token, api, item, deadline)
    return sum(1 for item in chosen if item.source == "refreshed")


async def _read_one(state: AppState, token: str, api: MogplexClient, item: _Seen, deadline: float) -> None:
    try:
        with anyio.fail_after(max(0.1, deadline - time.monotonic())):
            page = await api.list_events(item.known.run_id, limit=EVENTS_LIMIT_MAX, deadline=deadline)
    except (MogplexError, TimeoutError):
        return  # shown as remembered: listing never fails over one run
    item.run, item.events, item.source, item.as_of = page.run, page.events, "refreshed", time.time()
    await state.remember(token, page.run)
    snap = RunSnapshot.of_page(page)
    item.saw_last_events = snap.saw_last_events
    await judge(state, token, snap)  # a finished run's outcome is recorded like any other sighting


def _listed(item: _Seen, token: str, link: str) -> ListedRun:
    known, run, facts = item.known, item.run, item.known.facts
    status = run.status if run is not None else known.status
    outcome = None
    if run is not None and item.events is not None:
        outcome = derive_outcome(run, item.events, Coverage(saw_last_events=item.saw_last_events))
    delivered = _delivery(item, status, outcome)
    words = final_message(item.events, LIST_MESSAGE_CHARS) if item.events is not None else None
    title = None if known.title == known.run_id else shorten(clean_text(known.title, token), TITLE_CHARS)
    return ListedRun(
        run_id=known.run_id,
        status=status,
        terminal=status is not None and is_terminal(status),
        needs_input=needs_input(run) if run is not None else status == "awaiting_input",
        repo_id=(run.repo_id if run is not None else None) or known.repo_id,
        title=title,
        created_at=(run.created_at if run is not None else None) or _parsed(facts.created_at),
        updated_at=(run.updated_at if run is not None else None) or _parsed(facts.updated_at),
        working_branch=(run.branch.working if run is not None and run.branch else None) or facts.working_branch,
        delivered=delivered.delivered,
        pull_request_url=delivered.pull_request_url,
        code_changed=delivered.code_changed,
        changed_files_total=delivered.changed_files_total or None,
        final_message=clean_text(words, token) if words else None,
        pending_question=question_text(outcome, token) if outcome is not None else None,
        mogplex_url=link if status == "awaiting_input" else None,
        status_source=item.source,
        status_as_of=datetime.fromtimestamp(item.as_of, UTC) if item.as_of is not None else None,
        status_age_seconds=round(max(0.0, time.time() - item.as_of)) if item.as_of is not None else None,
    )


@dataclass(frozen=True)
class _Delivery:
    delivered: Delivered
    pull_request_url: str | None
    code_changed: bool | None
    changed_files_total: int | None


def _delivery(item: _Seen, status: str | None, outcome: RunOutcome | None) -> _Delivery:
    """The row's outcome: from the events at hand, else what a sighting of the finished run recorded.

    Never a guess: a finished run whose outcome no path has recorded is "unknown", never "no pull request".
    """
    facts = item.known.facts
    if outcome is not None and (outcome.delivered != "unknown" or facts.delivered is None):
        total = outcome.changed_files_total or facts.changed_files_total
        return _Delivery(outcome.delivered, outcome.pull_request_url, outcome.code_changed, total)
    if status is None or not is_terminal(status):
        return _Delivery("not_yet", None, None, None)
    recorded = next((value for value in get_args(Delivered) if value == facts.delivered), None)
    if recorded is None:
        return _Delivery("unknown", None, None, None)
    return _Delivery(recorded, facts.pull_request_url, facts.code_changed, facts.changed_files_total)


def _parsed(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
