"""The run tools: list_repos, start_run, get_run, cancel_run — definitions next to their handlers."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from mogplex_mcp.api.errors import ApiStatusError, IdempotencyConflictError, MogplexError, RateLimitedError
from mogplex_mcp.api.models import (
    IDEMPOTENCY_KEY_MAX_CHARS,
    PROMPT_MAX_CHARS,
    REPOS_LIMIT_MAX,
    CancelOutcome,
    Harness,
    RunDetail,
    StartedRun,
    StartRunRequest,
    idempotency_key_problem,
)
from mogplex_mcp.runs.fingerprints import request_fingerprint, token_fingerprint
from mogplex_mcp.runs.local.journal import JournalUnavailableError
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.runs.store import KeyClaim, RunFacts
from mogplex_mcp.server import guidance
from mogplex_mcp.server.errors import journal_unavailable_error, validation_error
from mogplex_mcp.server.outcomes import JudgedRun, judge, snapshot_of
from mogplex_mcp.server.results import (
    CancelRunResult,
    GetRunResult,
    ListReposResult,
    RepoView,
    StartRunResult,
    fit_to_budget,
)
from mogplex_mcp.server.snapshots import RunSnapshot, settled_snapshot
from mogplex_mcp.server.state import AppState, app_state, require_token, upstream

RunId = Annotated[str, Field(description="The run's id (a UUID), as returned by start_run.", max_length=64)]

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=True)

F = TypeVar("F", bound=Callable[..., Any])


def tool(server: MCPServer[Any], name: str, title: str, annotations: ToolAnnotations) -> Callable[[F], F]:
    """`server.tool`, with the docstring dedented into the description models read."""

    def decorator(fn: F) -> F:
        description = inspect.cleandoc(fn.__doc__ or "").replace("\n", " ")
        server.add_tool(fn, name=name, title=title, description=description, annotations=annotations)
        return fn

    return decorator


def register_run_tools(server: MCPServer[Any]) -> None:
    """Add list_repos, start_run, get_run and cancel_run to `server`."""

    @tool(server, "list_repos", "List repositories", READ_ONLY)
    async def list_repos(
        ctx: Context[Any, Any],
        query: Annotated[
            str | None,
            Field(description="Case-insensitive substring of the repository's full name.", max_length=200),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=REPOS_LIMIT_MAX, description="At most this many repos.")] = 50,
    ) -> ListReposResult:
        """List the Mogplex-connected repositories this token can start runs on. Use it to find the
        `repoId` that start_run needs."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        async with upstream("list repositories", token, state.budget) as deadline, state.client(token) as api:
            repos = (await api.list_repos(query=query or None, limit=limit, deadline=deadline))[:limit]
        views = fit_to_budget([RepoView.build(repo) for repo in repos])
        matching = f" matching {clean_text(query)[:100]!r}" if query else ""
        if not views:
            summary = f"No repositories{matching}." if query else "No repositories are connected."
            steps = ["Try a shorter query, or connect the repository in Mogplex first."]
        else:
            noun = "repository" if len(repos) == 1 else "repositories"
            summary = f"{len(repos)} {noun}{matching}."
            steps = ["Call start_run with the chosen repo's id as repoId and a clear, self-contained prompt."]
        if len(views) < len(repos):
            summary += f" Showing the first {len(views)} to keep this result small."
            steps.insert(0, "Pass a query (part of the repository name) to find the one you need.")
        return ListReposResult(summary=summary, next_steps=steps, repos=views, count=len(views))

    @tool(
        server,
        "start_run",
        "Start a coding-agent run",
        ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=True),
    )
    async def start_run(
        ctx: Context[Any, Any],
        repoId: Annotated[str, Field(description="Repository id from list_repos.", min_length=1, max_length=200)],
        prompt: Annotated[
            str,
            Field(
                description="The task for the coding agent: self-contained, with acceptance criteria.",
                min_length=1,
                max_length=PROMPT_MAX_CHARS,
            ),
        ],
        harness: Annotated[Harness | None, Field(description="Which agent runs the task. Default: codex.")] = None,
        baseBranch: Annotated[
            str | None, Field(description="Branch to start from. Default: the repo's default branch.")
        ] = None,
        workingBranch: Annotated[
            str | None,
            Field(description="Branch to commit to; with createBranch: true a new one (default: a generated name)."),
        ] = None,
        createBranch: Annotated[
            bool | None, Field(description="true: work on a separate branch, ready for review. Recommended.")
        ] = None,
        rootDirectory: Annotated[str | None, Field(description="Monorepo subpath to work in.")] = None,
        conversationId: Annotated[
            str | None, Field(description="Continue this Mogplex conversation (id from the Mogplex app).")
        ] = None,
        workspaceSessionId: Annotated[
            str | None, Field(description="Run in this existing Mogplex workspace session (id from the app).")
        ] = None,
        mode: Annotated[
            str | None, Field(description="Agent autonomy: SAFE, YOLO, or AUTO (the default; other values mean AUTO).")
        ] = None,
        idempotencyKey: Annotated[
            str | None,
            Field(
                description="Optional. Same key + same arguments = the same run, never a second one. "
                "Omit it: identical starts within 10 minutes are de-duplicated automatically.",
                max_length=IDEMPOTENCY_KEY_MAX_CHARS,
            ),
        ] = None,
    ) -> StartRunResult:
        """Start a remote coding-agent run on a repository. Returns at once with the run's id; the
        agent works in a cloud sandbox and usually opens a pull request. Pass createBranch: true for
        changes meant for review: without it (and without workingBranch) the agent commits straight onto
        the base branch. Safe to retry: repeating the same call does not start a second run."""
        optional = {
            "harness": harness,
            "baseBranch": baseBranch,
            "workingBranch": workingBranch,
            "createBranch": createBranch,
            "rootDirectory": rootDirectory,
            "conversationId": conversationId,
            "workspaceSessionId": workspaceSessionId,
            "mode": mode,
        }
        # Models often send "" for an optional field they mean to leave out; the service treats it as unset too.
        given = {name: value for name, value in optional.items() if not (isinstance(value, str) and not value.strip())}
        fields = {"repoId": repoId, "prompt": prompt, **given}
        try:
            request = StartRunRequest.model_validate(fields)
        except ValidationError as exc:
            raise validation_error("start_run", exc) from None
        if idempotencyKey is not None and (problem := idempotency_key_problem(idempotencyKey)):
            raise ToolError(f"invalid arguments: idempotencyKey {problem}. Nothing was sent to Mogplex.")
        state = app_state(ctx)
        token = require_token(ctx, state)
        result = await _start(state, token, request, idempotencyKey)
        if request.conversation_id or request.workspace_session_id:  # what continue_run may carry over
            sent = RunFacts(conversation_id=request.conversation_id, workspace_session_id=request.workspace_session_id)
            await state.remember_facts(token, result.run.run_id, sent)
        return result

    @tool(server, "get_run", "Get a run's state", READ_ONLY)
    async def get_run(ctx: Context[Any, Any], runId: RunId) -> GetRunResult:
        """Get a run's current state, plus what a person wants to know: is it done, how long has it
        taken, where is the pull request, did code change, is it probably stuck."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        follower = state.hub.get(token, runId)
        async with upstream("get the run", token, state.budget) as deadline:
            if follower is not None and follower.run is not None and follower.terminal:
                # A finished run never changes: answer from what its follower saw (once any backfill is done),
                # to a token upstream accepted recently.
                await state.confirm_token(token, deadline)
                snap = await settled_snapshot(follower, deadline)
            else:
                async with state.client(token) as api:
                    run = await api.get_run(runId, deadline=deadline)
                snap = await snapshot_of(state, token, run, deadline)
        await state.remember(token, snap.run)
        judged = judge(state, token, snap)
        return GetRunResult(
            summary=judged.summary,
            next_steps=guidance.next_steps(judged.outcome, caller="get_run"),
            run=judged.view,
        )

    @tool(
        server,
        "cancel_run",
        "Cancel a run",
        ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=True),
    )
    async def cancel_run(ctx: Context[Any, Any], runId: RunId) -> CancelRunResult:
        """Ask Mogplex to stop a run. Idempotent: cancelling a finished run changes nothing and says so.
        The agent's unpushed work is lost."""
        state = app_state(ctx)
        token = require_token(ctx, state)
        async with upstream("cancel the run", token, state.budget) as deadline:
            async with state.client(token) as api:
                result = await api.cancel_run(runId, deadline=deadline)
            if result.outcome == "cancellation_requested":
                state.notes.note_cancel_requested(token_fingerprint(token), runId)
            snap = await snapshot_of(state, token, result.run, deadline)
        await state.remember(token, result.run)
        judged = judge(state, token, snap)
        return CancelRunResult(
            summary=_cancel_summary(runId, result.outcome, judged),
            next_steps=guidance.after_cancel(judged.outcome, result.outcome),
            outcome=result.outcome,
            run=judged.view,
        )


def _cancel_summary(run_id: str, cancel: CancelOutcome, judged: JudgedRun) -> str:
    outcome = judged.outcome
    if cancel == "already_terminal":
        return f"Run {run_id} had already finished; nothing was cancelled. {judged.summary}"
    if outcome.terminal:
        return judged.summary
    return f"Cancellation requested for run {run_id}; it stops shortly (call wait_for_run to confirm)."


async def _start(state: AppState, token: str, request: StartRunRequest, explicit_key: str | None) -> StartRunResult:
    fingerprint = token_fingerprint(token)
    body_hash = request_fingerprint(state.settings.base_url, request.to_wire(), token=token)
    claim: KeyClaim | None = None
    if explicit_key is None:
        try:
            claim = await state.start_claims.claim_key(fingerprint, body_hash)
        except JournalUnavailableError as exc:  # a fresh key could start a second run: send nothing
            raise journal_unavailable_error(exc.reason) from None
    key = explicit_key.strip() if explicit_key is not None else claim.idempotency_key if claim else None
    async with (
        upstream("start the run", token, state.budget, argument="repoId") as deadline,
        state.client(token) as api,
    ):
        try:
            started = await api.start_run(request, idempotency_key=key, deadline=deadline)
        except MogplexError as exc:
            if claim is not None and _start_definitely_failed(exc):
                await state.start_claims.forget(fingerprint, body_hash)
            raise
    if claim is not None:
        if started.run.status == "failed":  # a failed start is never worth replaying
            await state.start_claims.forget(fingerprint, body_hash)
        else:
            await state.start_claims.record_started(fingerprint, body_hash, started.run.run_id)
    await state.remember(token, started.run, title=request.prompt)
    return await _started_result(state, token, started, claim, request)


def _start_definitely_failed(exc: MogplexError) -> bool:
    """A 4xx (other than 409 and 429) means no run exists under the key: the next try may use a new one."""
    if not isinstance(exc, ApiStatusError) or isinstance(exc, IdempotencyConflictError | RateLimitedError):
        return False
    return 400 <= exc.status < 500 and exc.status not in (408, 409)


async def _started_result(
    state: AppState, token: str, started: StartedRun, claim: KeyClaim | None, request: StartRunRequest
) -> StartRunResult:
    run: RunDetail = started.run
    state.notes.note_root_directory(token_fingerprint(token), run.run_id, run.root_directory)
    snap = RunSnapshot(run, [], False)
    if started.replayed and run.terminal:  # a finished run's real outcome, not nulls
        with anyio.move_on_after(state.budget) as scope:
            snap = await snapshot_of(state, token, run, time.monotonic() + state.budget)
        if scope.cancelled_caught:  # the run exists either way: report it, its delivery unknown
            snap = RunSnapshot(run, [], window_exhausted=False, saw_last_events=False)
    judged = judge(state, token, snap)
    repeated = started.replayed and not started.recovered
    to_default = not request.create_branch and request.working_branch is None
    return StartRunResult(
        summary=clean_text(_start_summary(started, claim, judged, to_default), token),
        next_steps=guidance.after_start(judged.outcome, repeated=repeated, to_default_branch=to_default),
        run=judged.view,
        replayed=started.replayed,
        recovered=started.recovered,
        idempotency_key=started.idempotency_key,
    )


def _start_summary(started: StartedRun, claim: KeyClaim | None, judged: JudgedRun, to_default: bool) -> str:
    view = judged.view
    where = f" on branch {view.working_branch}" if view.working_branch else ""
    standing = judged.summary
    if to_default and not judged.outcome.terminal:
        where += " (straight onto the base branch: no separate branch for review)"
    if started.recovered:
        return (
            f"Started run {view.run_id}{where}: the connection failed after Mogplex accepted the start, and "
            f"this server's retry recovered the run (no second run). {standing}"
        )
    if started.replayed:
        ago = f" from {int(claim.age_seconds)} s ago" if claim and claim.reused else ""
        return f"Replayed an identical earlier start{ago}; no second run was started. {standing}"
    return f"Started run {view.run_id} ({view.harness or 'codex'}){where}. {standing}"
