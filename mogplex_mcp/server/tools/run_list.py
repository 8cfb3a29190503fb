"""list_runs' work: a page of the journal's known runs, active ones refreshed within the token's budget.

Statuses come, in order of preference, from a follower watching the run (live), from the journal when the
run is finished (final: it never changes), or from one fresh read per active run — at most
`settings.list_refresh_max` reads, and only while the token's pacer has room, so listing many runs never
costs one upstream call per run. What is not refreshed is shown as remembered, with when it was seen.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import MogplexError
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunDetail, RunEvent, is_terminal
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.review import changed_files, final_message
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.settled import needs_input
from mogplex_mcp.runs.store import KnownRun, RunFacts, RunsQuery
from mogplex_mcp.runs.views import find_delivery
from mogplex_mcp.server.results import fit_to_budget
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.tools.orchestration_results import ListedRun, StatusSource

TITLE_CHARS = 80
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


@dataclass(frozen=True)
class RunPage:
    runs: list[ListedRun]
    next_cursor: str | None
    refreshed: int
    not_refreshed: int
    cut_for_size: bool = False


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
    """The page `query` names, freshest statuses first-hand where the budget allows."""
    fingerprint = token_fingerprint(token)
    wider = RunsQuery(query.limit + 1, query.before, query.repo_id, query.terminal)
    rows = await state.known_runs.runs_page(fingerprint, wider)
    page, more = rows[: query.limit], len(rows) > query.limit
    seen = [_from_follower_or_journal(state, token, known) for known in page]
    stale = [item for item in seen if item.source == "remembered"]
    refreshed = await _refresh(state, token, stale[: state.settings.list_refresh_max])
    listed = [_listed(item, token) for item in seen]
    shown = fit_to_budget(listed)  # a long page is cut to keep the result small; the cursor resumes after it
    cut = len(shown) < len(listed)
    last = page[len(shown) - 1] if shown else None
    return RunPage(
        runs=shown,
        next_cursor=encode_cursor(last) if last is not None and (more or cut) else None,
        refreshed=refreshed,
        not_refreshed=len(stale) - refreshed,
        cut_for_size=cut,
    )


def _from_follower_or_journal(state: AppState, token: str, known: KnownRun) -> _Seen:
    follower = state.hub.get(token, known.run_id)
    if follower is not None and follower.run is not None and (follower.active or follower.terminal):
        source: StatusSource = "final" if follower.terminal else "live"
        return _Seen(known, source, follower.run, follower.events(), time.time())
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
    delivery = find_delivery(page.events)
    if page.run.terminal and delivery is not None:
        outcome = RunFacts(pull_request_url=delivery.pull_request_url, code_changed=delivery.changed)
        await state.remember_facts(token, page.run.run_id, outcome)


def _listed(item: _Seen, token: str) -> ListedRun:
    known, run, facts = item.known, item.run, item.known.facts
    delivery = find_delivery(item.events) if item.events is not None else None
    status = run.status if run is not None else known.status
    paths_total = changed_files(item.events)[1] if item.events is not None else 0
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
        pull_request_url=(delivery.pull_request_url if delivery else None) or facts.pull_request_url,
        code_changed=delivery.changed if delivery and delivery.changed is not None else facts.code_changed,
        changed_files_total=paths_total or None,
        final_message=clean_text(words, token) if words else None,
        status_source=item.source,
        status_as_of=datetime.fromtimestamp(item.as_of, UTC) if item.as_of is not None else None,
    )


def _parsed(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
