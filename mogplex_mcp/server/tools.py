"""The run tools: list_repos, start_run, get_run, cancel_run — definitions next to their handlers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from mogplex_mcp.api.errors import ApiStatusError, IdempotencyConflictError, MogplexError, RateLimitedError
from mogplex_mcp.api.models import (
    IDEMPOTENCY_KEY_MAX_CHARS,
    PROMPT_MAX_CHARS,
    REPOS_LIMIT_MAX,
    Harness,
    RunDetail,
    RunEvent,
    StartedRun,
    StartRunRequest,
    idempotency_key_problem,
)
from mogplex_mcp.runs.journal import JournalUnavailableError, KeyClaim, request_fingerprint, token_fingerprint
from mogplex_mcp.runs.known_runs import RunFacts
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.runs.views import describe_status, find_delivery
from mogplex_mcp.server import guidance
from mogplex_mcp.server.errors import journal_unavailable_error, validation_error
from mogplex_mcp.server.results import (
    CancelRunResult,
    GetRunResult,
    ListReposResult,
    RepoView,
    RunView,
    StartRunResult,
    fit_to_budget,
)
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
            Field(description="Branch to commit to. Default: baseBranch, or a generated name with createBranch."),
        ] = None,
        createBranch: Annotated[
            bool | None, Field(description="Create (or use) a separate working branch for this run.")
        ] = None,
        rootDirectory: Annotated[str | None, Field(description="Monorepo subpath to work in.")] = None,
        conversationId: Annotated[str | None, Field(description="Attach to an existing conversation.")] = None,
        workspaceSessionId: Annotated[str | None, Field(description="Attach to an existing workspace session.")] = None,
        mode: Annotated[str | None, Field(description="Mode hint for the runtime (e.g. SAFE, AUTO).")] = None,
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
        agent works in a cloud sandbox and usually opens a pull request. Safe to retry: repeating the
        same call does not start a second run."""
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
            raise ToolError(f"Invalid arguments for start_run: idempotencyKey {problem}. Nothing was sent.")
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
        events: list[RunEvent] | None = None
        if follower is not None and follower.run is not None and follower.terminal:
            # A finished run never changes: answer from what its follower already saw.
            run, events = follower.run, follower.events()
            delivery = find_delivery(events)
        else:
            async with upstream("get the run", token, state.budget) as deadline, state.client(token) as api:
                run = await api.get_run(runId, deadline=deadline)
                delivery = None
                if run.terminal:
                    page = await api.list_events(runId, limit=200, deadline=deadline)
                    events = page.events
                    delivery = find_delivery(events)
        await state.remember(token, run)
        view = RunView.build(run, delivery, token, events=events)
        return GetRunResult(
            summary=f"Run {run.run_id} {describe_status(run, delivery)}.",
            next_steps=guidance.next_steps(view),
            run=view,
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
        async with upstream("cancel the run", token, state.budget) as deadline, state.client(token) as api:
            result = await api.cancel_run(runId, deadline=deadline)
        await state.remember(token, result.run)
        view = RunView.build(result.run, None, token)
        if result.outcome == "already_terminal":
            summary = f"Run {runId} had already finished ({result.run.status}); nothing was cancelled."
        elif result.run.status == "failed":
            summary = f"Run {runId} stopped (it ended as 'failed' while being cancelled: cancelled in effect)."
        else:
            summary = f"Cancellation requested for run {runId}; it will reach 'cancelled' shortly."
        return CancelRunResult(
            summary=summary,
            next_steps=guidance.after_cancel(view, result.outcome),
            outcome=result.outcome,
            run=view,
        )


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
    async with upstream("start the run", token, state.budget) as deadline, state.client(token) as api:
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
    return _started_result(started, claim, token)


def _start_definitely_failed(exc: MogplexError) -> bool:
    """A 4xx (other than 409 and 429) means no run exists under the key: the next try may use a new one."""
    if not isinstance(exc, ApiStatusError) or isinstance(exc, IdempotencyConflictError | RateLimitedError):
        return False
    return 400 <= exc.status < 500 and exc.status not in (408, 409)


def _started_result(started: StartedRun, claim: KeyClaim | None, token: str) -> StartRunResult:
    run: RunDetail = started.run
    view = RunView.build(run, None, token)
    where = f" on branch {view.working_branch}" if view.working_branch else ""
    if started.replayed:
        ago = f" from {int(claim.age_seconds)} s ago" if claim and claim.reused else ""
        summary = (
            f"Replayed an identical earlier start{ago}: run {run.run_id} ({run.status}){where}. "
            "No second run was started."
        )
    else:
        summary = f"Started run {run.run_id} ({view.harness or 'codex'}){where}; status {run.status}."
    return StartRunResult(
        summary=clean_text(summary, token),
        next_steps=guidance.after_start(view, started.replayed),
        run=view,
        replayed=started.replayed,
        idempotency_key=started.idempotency_key,
    )
