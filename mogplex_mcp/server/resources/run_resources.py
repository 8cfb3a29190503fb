"""Run resources: mogplex://runs/{runId} (state), …/events (the event log) and …/log (a transcript).

Reads come from the run's follower when one is following it (fresher, and past the API's first 200
events where the upstream streams), else from one upstream call. `resources/list` shows the runs
this server started or looked at with the caller's token, newest first; subscriptions live in
`subscriptions.py`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mogplex_mcp.api.errors import MogplexError, NotFoundError, UpstreamTimeoutError
from mogplex_mcp.api.models import is_terminal, is_uuid
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.health import TaskHealth, supervise
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.store import KnownRun, RunsUnreadable
from mogplex_mcp.server import guidance
from mogplex_mcp.server.compact_views import coalescing_note, transcript_tail
from mogplex_mcp.server.errors import missing_token_error, runs_unreadable_message, tool_error
from mogplex_mcp.server.outcomes import JudgedRun, judge
from mogplex_mcp.server.resources.subscribers import request_headers, run_not_found
from mogplex_mcp.server.resources.subscriptions import ResourceMiddleware, RunNotifier
from mogplex_mcp.server.resources.uris import EVENTS_URI, LOG_URI, RUN_URI, run_uris
from mogplex_mcp.server.results import UNTRUSTED_NOTE, EventView, RunView, fit_to_budget
from mogplex_mcp.server.snapshots import RunSnapshot, load_snapshot
from mogplex_mcp.server.state import AppState, app_state, token_from_request

LIST_LIMIT = 50
STATELESS_SUBSCRIBE = (
    "resources/subscribe is not available: this server runs stateless (--stateless), so it could never deliver "
    "a resources/updated notification. Read the resource again, or call wait_for_run, to see changes."
)
TRANSCRIPT_CHAR_BUDGET = 14_000
EVENTS_PAGE_MAX = 200
EVENTS_PAGE_URI = EVENTS_URI + "{?after}"
TRUNCATED_NOTE = (
    "Mogplex's events API returns only the first 200 events of a run and this Mogplex deployment offers no "
    "event stream, so later events cannot be shown."
)


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class RunDocument(_Doc):
    """mogplex://runs/{runId}: where the run stands, with the facts derived from its events."""

    uri: str
    summary: str
    next_steps: list[str]
    run: RunView
    event_count: int
    last_event_at: datetime | None = None
    live: bool = Field(description="A follower is watching this run now (subscriptions and waits share it).")
    events_uri: str
    log_uri: str


class EventLogDocument(_Doc):
    """mogplex://runs/{runId}/events[?after=<eventId>]: one page of the events known, oldest first, cleaned."""

    uri: str
    run_id: str
    status: str
    terminal: bool
    event_count: int = Field(description="Events known for the run (all pages).")
    shown: int = Field(description="Events on this page.")
    next_uri: str | None = Field(default=None, description="Read this URI for the events after this page.")
    window_exhausted: bool = Field(description="Only the API's first 200 events could be read.")
    dropped_earliest: int = Field(description="Earliest events dropped to keep this server's memory bounded.")
    note: str | None = None
    untrusted_content: str = UNTRUSTED_NOTE
    events: list[EventView]


def register_resources(server: MCPServer[Any], *, stateless: bool = False) -> ResourceSurface:
    """Add the run resources, resources/list, and live updates in both eras to `server`.

    Call `attach(state, task_group)` on the result from the lifespan, once the state exists. Run changes
    travel over per-token buses (see `subscriptions.py`), not over the server's shared one. `stateless`
    (HTTP with no sessions): handshake-era subscriptions are refused and not advertised — nothing could
    deliver their notifications.
    """
    surface = ResourceSurface()
    _add_templates(server)
    _add_protocol_handlers(server, surface, stateless=stateless)
    server.middleware.append(ResourceMiddleware(surface.notifiers, stateless=stateless))
    return surface


def _add_templates(server: MCPServer[Any]) -> None:
    @server.resource(RUN_URI, name="run", title="Mogplex run", mime_type="application/json")
    async def run_state(runId: str, ctx: Context[Any, Any]) -> str:
        """A Mogplex run's state: status, outcome, pull request link, branches, timing."""
        state, snap, token = await _snapshot(ctx, runId)
        return _run_document(await judge(state, token, snap), snap).model_dump_json(indent=2)

    @server.resource(EVENTS_PAGE_URI, name="run-events", title="Mogplex run event log", mime_type="application/json")
    async def run_events(runId: str, ctx: Context[Any, Any], after: str | None = None) -> str:
        """A Mogplex run's events, oldest first, a page at a time (nextUri reads on; untrusted agent text)."""
        _, snap, token = await _snapshot(ctx, runId)
        return _event_log(snap, token, after).model_dump_json(indent=2)

    @server.resource(LOG_URI, name="run-log", title="Mogplex run transcript", mime_type="text/plain")
    async def run_log(runId: str, ctx: Context[Any, Any]) -> str:
        """A readable transcript of a Mogplex run: one line per event, then the outcome and PR link."""
        state, snap, token = await _snapshot(ctx, runId)
        return transcript(snap, token, await judge(state, token, snap))


def _add_protocol_handlers(server: MCPServer[Any], surface: ResourceSurface, *, stateless: bool) -> None:
    """resources/list with the caller's token, and subscriptions in both eras, on the lowlevel server.

    MCPServer's `list_resources()` sees no request (so no per-request token over HTTP), and it has no
    hook for resources/subscribe; registering on the lowlevel server is the SDK's documented way.
    """
    lowlevel = server._lowlevel_server

    async def list_runs(
        ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        if params is not None and params.cursor is not None:  # this list is never paged: no cursor was given out
            raise MCPError(INVALID_PARAMS, "Invalid cursor: resources/list is one page; call it without a cursor.")
        resources = list(await server.list_resources())
        state = ctx.lifespan_context
        token = token_from_request(request_headers(ctx), state.settings) if isinstance(state, AppState) else None
        if isinstance(state, AppState) and token and await _confirmed(state, token):
            try:
                known = await state.known_runs.known_runs(token_fingerprint(token), LIST_LIMIT)
            except RunsUnreadable as exc:  # an empty list would say "no runs": say what is true instead
                raise MCPError(INTERNAL_ERROR, runs_unreadable_message(exc.reason)) from None
            now = time.time()
            resources += [_listed(run, _standing(state, token, run, now)) for run in known]
        return ListResourcesResult(resources=resources)

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        if stateless:
            raise MCPError(INVALID_REQUEST, STATELESS_SUBSCRIBE)
        await surface.notifier_for(ctx).subscribers.subscribe(ctx, str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        await surface.notifier_for(ctx).subscribers.unsubscribe(ctx, str(params.uri))
        return EmptyResult()

    async def listen(
        ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        async with surface.notifier_for(ctx).subscribers.holding(ctx, params.notifications) as bus:
            # One handler per stream, over its caller's bus: it sees only that token's changes. A draining server
            # ends the stream gracefully (its final result), so the client knows to listen again elsewhere.
            handler = ListenHandler(bus)
            state = ctx.lifespan_context
            if not isinstance(state, AppState):
                return await handler(ctx, params)
            with state.readiness.closing_on_drain(handler.close):
                return await handler(ctx, params)

    lowlevel.add_request_handler("resources/list", PaginatedRequestParams, list_runs)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, listen)


async def _confirmed(state: AppState, token: str) -> bool:
    """Whether the runs list may be shown: upstream accepted the token lately (asked now if need be)."""
    try:
        with anyio.fail_after(state.budget + 2.0):
            await state.confirm_token(token, time.monotonic() + state.budget)
    except (MogplexError, TimeoutError):
        return False
    return True


class ResourceSurface:
    """The resources' per-lifespan notifiers (one server object may serve several lifespans in tests)."""

    def __init__(self) -> None:
        self.notifiers: dict[int, RunNotifier] = {}

    def attach(self, state: AppState, task_group: TaskGroup) -> RunNotifier:
        """Hook a new lifespan's state up: follower changes and new runs reach subscribers."""
        notifier = RunNotifier(state)
        self.notifiers[id(state)] = notifier
        # Supervised twice over: _serve restarts the flush loop after a crash (one that keeps crashing is
        # reported not ready through TaskHealth), and whatever still escapes is reported not ready (/readyz).
        task_group.start_soon(
            state.readiness.supervise,
            "notifications",
            lambda: self._serve(id(state), notifier, state.hub.health),
            name="notifications",
        )
        return notifier

    async def _serve(self, key: int, notifier: RunNotifier, health: TaskHealth) -> None:
        # Supervised: a crash is logged and the flush loop restarted (subscriptions kept); one that keeps
        # crashing is reported as not ready. Watches are released once, when the lifespan ends.
        try:
            await supervise("resource notifications", notifier.flush_forever, health, critical=True)
        finally:
            await notifier.release_all()
            self.notifiers.pop(key, None)

    def notifier_for(self, ctx: ServerRequestContext[Any, Any]) -> RunNotifier:
        notifier = self.notifiers.get(id(ctx.lifespan_context))
        if notifier is None:
            raise MCPError(
                INTERNAL_ERROR, "mogplex-mcp resources are not attached: build the server with create_server()"
            )
        return notifier


# --- reading ----------------------------------------------------------------------------------------


async def _snapshot(ctx: Context[Any, Any], run_id: str) -> tuple[AppState, RunSnapshot, str]:
    """The run's state and events (see `snapshots.load_snapshot`), with failures as resource errors."""
    if not is_uuid(run_id):
        shown = shorten(clean_text(run_id), 80)
        raise ResourceNotFoundError(f"No run {shown!r}: a runId is a UUID, as start_run returns it.")
    state = app_state(ctx)
    token = token_from_request(ctx.headers, state.settings)
    if not token:
        raise ResourceError(str(missing_token_error()))
    deadline = time.monotonic() + state.budget
    try:
        with anyio.fail_after(state.budget + 2.0):
            return state, await load_snapshot(state, token, run_id, deadline), token
    except NotFoundError:
        raise ResourceNotFoundError(run_not_found(run_id)) from None
    except TimeoutError:
        error: MogplexError = UpstreamTimeoutError("deadline reached")
    except MogplexError as exc:
        error = exc
    raise ResourceError(str(tool_error(error, "read the run", token=token))) from None


# --- rendering --------------------------------------------------------------------------------------


def _run_document(judged: JudgedRun, snap: RunSnapshot) -> RunDocument:
    uri, events_uri, log_uri = run_uris(snap.run.run_id)
    return RunDocument(
        uri=uri,
        summary=judged.summary,
        next_steps=guidance.next_steps(judged.outcome, caller="resource"),
        run=judged.view,
        event_count=len(snap.events) + snap.dropped_events,
        last_event_at=snap.events[-1].created_at if snap.events else None,
        live=snap.live,
        events_uri=events_uri,
        log_uri=log_uri,
    )


def _event_log(snap: RunSnapshot, token: str, after: str | None) -> EventLogDocument:
    run = snap.run
    base = run_uris(run.run_id)[1]
    ids = [event.id for event in snap.events]
    if after and after not in ids:
        raise ResourceNotFoundError(
            f"{shorten(clean_text(after, token), 80)!r} is not an event of run {run.run_id}: use the nextUri of "
            f"an earlier page, or read {base} for the first page."
        )
    start = ids.index(after) + 1 if after else 0
    page = snap.events[start : start + EVENTS_PAGE_MAX]
    views = fit_to_budget([EventView.build(event, include_payload=True, secret=token) for event in page])
    more = start + len(views) < len(snap.events)
    return EventLogDocument(
        uri=f"{base}?after={after}" if after else base,
        run_id=run.run_id,
        status=run.status,
        terminal=run.terminal,
        event_count=len(snap.events),
        shown=len(views),
        next_uri=f"{base}?after={views[-1].id}" if more and views else None,
        window_exhausted=snap.window_exhausted,
        dropped_earliest=snap.dropped_events,
        note=_coverage_note(snap),
        events=views,
    )


def transcript(snap: RunSnapshot, token: str, judged: JudgedRun) -> str:
    """One line per event, oldest first, then the outcome; the earliest lines give way beyond the budget."""
    run = snap.run
    head = [f"Mogplex run {run.run_id} — status {clean_text(run.status, token)}", f"({UNTRUSTED_NOTE})", ""]
    lines = snap.compact_lines()
    if (coalesced := coalescing_note(len(snap.events), len(lines))) is not None:
        head.append(coalesced)
    kept = transcript_tail(lines, token, TRANSCRIPT_CHAR_BUDGET)
    omitted = len(lines) - len(kept)
    if snap.dropped_events:
        head.append(f"… {snap.dropped_events} earliest events not kept by this server …")
    if omitted:
        head.append(
            f"… {omitted} earlier lines (of {len(snap.events)} events) not shown here: "
            f"read {run_uris(run.run_id)[1]} for every event …"
        )
    body = kept or ["(no events yet)"]
    tail: list[str] = []
    note = _coverage_note(snap)
    if note:
        tail += ["", note]
    verb = "Outcome" if run.terminal else "So far"
    tail += ["", f"{verb}: run {run.run_id} {clean_text(judged.outcome.sentence(), token)}."]
    return "\n".join(head + body + tail) + "\n"


def _coverage_note(snap: RunSnapshot) -> str | None:
    if snap.window_exhausted:
        return TRUNCATED_NOTE
    if not snap.run.terminal:
        return "The run is still going: subscribe to this resource (or call wait_for_run) for what comes next."
    return None


def _standing(state: AppState, token: str, run: KnownRun, now: float) -> str:
    """The status a title shows, with how fresh it is: followed now, final, or as last seen (with its age)."""
    follower = state.hub.get(token, run.run_id)
    if follower is not None and follower.run is not None and (follower.active or follower.terminal):
        return follower.run.status if follower.terminal else f"{follower.run.status} now"
    if run.status is not None and is_terminal(run.status):
        return run.status
    status = run.status or "status not seen yet"
    return f"{status} as of {_age(now - run.last_seen)} ago; read it for now"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, int(seconds))} s"
    if seconds < 5400:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


def _listed(run: KnownRun, standing: str) -> Resource:
    run_id = run.run_id
    seen = datetime.fromtimestamp(run.first_seen, UTC).strftime("%Y-%m-%d %H:%M UTC")
    named = shorten(run.title, 80) if run.title != run_id else f"run {run_id[:8]}"
    return Resource(
        uri=run_uris(run_id)[0],
        name=f"run-{run_id}",
        title=shorten(clean_text(f"{named} ({standing})"), 140),
        description=(
            f"Mogplex run {run_id}, first seen {seen}. Its event log is at …/events (JSON) and a readable "
            "transcript at …/log."
        ),
        mime_type="application/json",
    )
