"""The orchestration tools: list_runs, wait_for_runs, continue_run — definitions next to their handlers."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from mogplex_mcp.api.errors import InvalidRequestError
from mogplex_mcp.api.models import PROMPT_MAX_CHARS, Harness, RunDetail, StartHarness, StartRunRequest, checked_uuid
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.settled import needs_input
from mogplex_mcp.runs.store import RunFacts, RunsQuery, RunsUnreadable
from mogplex_mcp.server.errors import runs_unreadable_message, tool_error, validation_error
from mogplex_mcp.server.outcomes import judge, snapshot_of
from mogplex_mcp.server.state import AppState, app_state, require_token, upstream
from mogplex_mcp.server.tools.definitions import READ_ONLY, RunId, tool
from mogplex_mcp.server.tools.multi_wait import wait_for_runs as wait_on_runs
from mogplex_mcp.server.tools.orchestration_results import (
    ContinueRunResult,
    ListRunsResult,
    WaitForRunsResult,
    WaitMode,
)
from mogplex_mcp.server.tools.run_list import BadCursor, RunPage, decode_cursor, list_page
from mogplex_mcp.server.tools.run_tools import FollowUp, start

WAIT_RUNS_MAX = 20
_STATUS_FILTER = {"active": False, "finished": True, "all": None}


def register_orchestration_tools(server: MCPServer[Any]) -> None:
    """Add list_runs, wait_for_runs and continue_run to `server`."""
    _add_list_runs(server)
    _add_wait_for_runs(server)
    _add_continue_run(server)


def _add_list_runs(server: MCPServer[Any]) -> None:
    @tool(server, "list_runs", "List known runs", READ_ONLY)
    async def list_runs(
        ctx: Context[Any, Any],
        status: Annotated[Literal["active", "finished", "all"], Field(description="Filter by state.")] = "all",
        repoId: Annotated[str | None, Field(description="Only this repository's runs.", max_length=200)] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[str | None, Field(description="nextCursor of the previous page.", max_length=200)] = None,
    ) -> ListRunsResult:
        """Runs this server started or looked at with your token, newest first (Mogplex itself has no run
        list): status, title, outcome (delivered). Active runs are refreshed within the rate budget;
        statusSource says how fresh each is. With a status filter, runs whose status could not be confirmed
        now are listed under unconfirmed, never under the filter."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        try:
            before = decode_cursor(cursor) if cursor else None
        except BadCursor as exc:
            raise ToolError(f"invalid arguments: {exc}. Omit it to start at the newest run.") from None
        query = RunsQuery(limit, before, repoId.strip() if repoId and repoId.strip() else None, _STATUS_FILTER[status])
        async with upstream("list your runs", token, state.budget) as deadline:
            await state.confirm_token(token, deadline)  # the list is cached: only for a token accepted lately
        try:
            page = await list_page(state, token, query)
        except RunsUnreadable as exc:  # not "no runs seen": the list exists, it cannot be read just now
            raise ToolError(runs_unreadable_message(exc.reason)) from None
        return _listed_result(page, status)


def _add_wait_for_runs(server: MCPServer[Any]) -> None:
    @tool(server, "wait_for_runs", "Wait for several runs", READ_ONLY)
    async def wait_for_runs(
        ctx: Context[Any, Any],
        runIds: Annotated[
            list[Annotated[str, Field(max_length=64)]],
            Field(min_length=1, max_length=WAIT_RUNS_MAX, description="Run ids (UUIDs), no repeats."),
        ],
        mode: Annotated[WaitMode, Field(description="any: return when one settles; all: when every one has.")] = "any",
        timeoutSeconds: Annotated[float, Field(ge=1, le=50, description="Longest wait (default 20 s).")] = 20.0,
    ) -> WaitForRunsResult:
        """Wait until one (any) or every (all) run finishes or needs a person's input, or the timeout passes.
        Sends progress for each status change and new event."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        run_ids = _checked_run_ids(runIds)
        timeout = min(timeoutSeconds, state.settings.wait_max_seconds)
        async with upstream("wait for the runs", token, state.budget) as deadline:
            await state.confirm_token(token, deadline)  # finished runs are answered from cache
        return await wait_on_runs(ctx, state, token, run_ids, mode, timeout)


def _add_continue_run(server: MCPServer[Any]) -> None:
    @tool(
        server,
        "continue_run",
        "Continue a finished run",
        ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=True),
    )
    async def continue_run(
        ctx: Context[Any, Any],
        runId: RunId,
        prompt: Annotated[str, Field(description="The follow-up task.", min_length=1, max_length=PROMPT_MAX_CHARS)],
        harness: Annotated[Harness | None, Field(description="Default: the run's own.")] = None,
    ) -> ContinueRunResult:
        """Follow up on a finished run: a new run on its repo that commits onto its working branch (so it
        updates that run's pull request), same directory and harness. Safe to retry. Refuses while the run is
        still active."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        _check_uuid(runId)
        previous = await _finished_run(state, token, runId)
        request, carried = await _follow_up(state, token, previous, prompt, harness)
        onto = FollowUp(request.base_branch or "", await _pull_request_of(state, token, previous))
        started = await start(state, token, request, None, onto)
        chain = RunFacts(conversation_id=request.conversation_id, workspace_session_id=request.workspace_session_id)
        await state.remember_facts(token, started.run.run_id, chain)
        verb = "Replayed the identical follow-up" if started.replayed else "Continued"
        return ContinueRunResult(
            **{**started.model_dump(), "summary": f"{verb} run {runId}: {started.summary}"},
            continued_from=runId,
            carried_over=carried,
        )


def _check_uuid(run_id: str) -> None:
    try:
        checked_uuid(run_id, "runId", "as returned by start_run")
    except InvalidRequestError as exc:
        raise tool_error(exc, "read the run") from None


def _checked_run_ids(run_ids: list[str]) -> list[str]:
    for run_id in run_ids:
        _check_uuid(run_id)
    lowered = [run_id.lower() for run_id in run_ids]
    repeated = sorted({run_id for run_id in lowered if lowered.count(run_id) > 1})
    if repeated:
        raise ToolError(f"invalid arguments: runIds lists {repeated[0]} more than once. Nothing was sent to Mogplex.")
    return run_ids


async def _finished_run(state: AppState, token: str, run_id: str) -> RunDetail:
    """The run to continue, read (never written) upstream unless its follower saw it finish; refuses an active one."""
    follower = state.hub.get(token, run_id)
    if follower is not None and follower.run is not None and follower.terminal:
        run = follower.run
    else:
        async with upstream("read the run to continue", token, state.budget) as deadline, state.client(token) as api:
            run = await api.get_run(run_id, deadline=deadline)
        await state.remember(token, run)
    if needs_input(run):
        raise ToolError(
            f"Run {run_id} needs a person's input in Mogplex: answer it there (or cancel_run it) before "
            "continuing. Nothing was started."
        )
    if not run.terminal:
        raise ToolError(
            f"Run {run_id} is still {run.status}: wait for it (wait_for_run) or cancel it (cancel_run) first. "
            "Nothing was started."
        )
    return run


async def _follow_up(
    state: AppState, token: str, previous: RunDetail, prompt: str, harness: Harness | None
) -> tuple[StartRunRequest, list[str]]:
    """The start request that continues `previous`, and a note of what it carries over."""
    known = await state.known_runs.known_run(token_fingerprint(token), previous.run_id)
    facts = known.facts if known is not None else RunFacts()
    branch = (previous.branch.working if previous.branch else None) or facts.working_branch
    if not previous.repo_id or not branch:
        raise ToolError(
            f"Cannot continue run {previous.run_id}: Mogplex did not say which repository and branch it worked "
            "on. Start a new run with start_run instead. Nothing was started."
        )
    inherited = previous.harness if previous.harness in get_args(StartHarness) else facts.harness
    carried = {
        "baseBranch": branch,
        "rootDirectory": previous.root_directory or facts.root_directory,
        "harness": harness or inherited,
        "conversationId": facts.conversation_id,
        "workspaceSessionId": facts.workspace_session_id,
    }
    given = {name: value for name, value in carried.items() if value}
    try:
        request = StartRunRequest.model_validate({"repoId": previous.repo_id, "prompt": prompt, **given})
    except ValidationError as exc:
        raise validation_error("continue_run", exc) from None
    return request, [f"{name}={value}" for name, value in given.items() if not (name == "harness" and harness)]


async def _pull_request_of(state: AppState, token: str, previous: RunDetail) -> str | None:
    """The finished run's pull request: as recorded by whatever saw it finish, else looked up once."""
    known = await state.known_runs.known_run(token_fingerprint(token), previous.run_id)
    if known is not None and known.facts.delivered is not None:
        return known.facts.pull_request_url
    async with upstream("read the run to continue", token, state.budget) as deadline:
        snap = await snapshot_of(state, token, previous, deadline)
    return (await judge(state, token, snap)).outcome.pull_request_url


def _listed_result(page: RunPage, status: str) -> ListRunsResult:
    which = "" if status == "all" else f" {status}"
    runs = page.runs
    if not runs and not page.unconfirmed and not page.unchecked:
        summary = f"No{which} runs seen through this server with this token yet."
        steps = ["Start one with start_run; runs started elsewhere appear once get_run has looked at them."]
    else:
        summary = f"{len(runs)}{which} run(s) seen through this server, newest first."
        asking = sum(1 for run in runs if run.needs_input)
        if asking:
            summary += f" {asking} need(s) a person's input in Mogplex (see each one's pendingQuestion)."
        steps = ["Call wait_for_runs with the active runs' ids to wait for them; get_run for one run's details."]
        if page.not_refreshed and status == "all":
            summary += f" {page.not_refreshed} active run(s) show their last known status (rate budget spent)."
        if page.next_cursor:
            steps.append("Older runs follow: call list_runs again with cursor = nextCursor.")
    if page.unconfirmed:
        oldest = max(run.status_age_seconds or 0 for run in page.unconfirmed)
        summary += (
            f" {len(page.unconfirmed)} more were{which} when last seen (up to {oldest:.0f} s ago) but could not be "
            "checked now (rate budget spent): they are under unconfirmed, not counted here."
        )
        steps.append("get_run on an unconfirmed run gives its status now; list_runs again later refreshes them.")
    if page.unchecked:
        summary += (
            f" {page.unchecked} run(s) last seen active could not be checked now (rate budget spent) and may have "
            "finished since: list_runs again later, or get_run one."
        )
    if page.moved:
        summary += f" {page.moved} run(s) stored as{which} turned out to be no longer{which} and were left out."
    if page.cut_for_size:
        summary += " Cut short to keep this result small."
    return ListRunsResult(
        summary=summary,
        next_steps=steps,
        runs=runs,
        count=len(runs),
        unconfirmed=page.unconfirmed,
        next_cursor=page.next_cursor,
        refreshed=page.refreshed,
        not_refreshed=page.not_refreshed,
    )
