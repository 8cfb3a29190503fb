"""The run tools: list_repos, start_run, get_run, cancel_run — definitions next to their handlers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BeforeValidator, Field, ValidationError

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
    is_uuid,
)
from mogplex_mcp.runs.fingerprints import request_fingerprint, token_fingerprint
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.runs.start import StartRequest, start_once
from mogplex_mcp.runs.store import KeyClaim, RunFacts, StartClaimsUnavailableError
from mogplex_mcp.server import guidance
from mogplex_mcp.server.errors import claims_unavailable_error, validation_error
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
from mogplex_mcp.server.tools.definitions import READ_ONLY, RunId, tool
from mogplex_mcp.server.tools.repo_names import looks_like_name, name_error, not_an_id_error


def register_run_tools(server: MCPServer[Any]) -> None:
    """Add list_repos, start_run, get_run and cancel_run to `server`."""
    _add_list_repos(server)
    _add_start_run(server)
    _add_get_run(server)
    _add_cancel_run(server)


def _add_list_repos(server: MCPServer[Any]) -> None:
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


# start_run's arguments (their descriptions are what models read).
RepoId = Annotated[str, Field(description="Repository id from list_repos.", min_length=1, max_length=200)]
Prompt = Annotated[
    str,
    Field(
        description="The task for the coding agent: self-contained, with acceptance criteria.",
        min_length=1,
        max_length=PROMPT_MAX_CHARS,
    ),
]
HarnessArg = Annotated[Harness | None, Field(description="Which agent runs the task. Default: codex.")]
BaseBranch = Annotated[str | None, Field(description="Branch to start from. Default: the repo's default branch.")]
WorkingBranch = Annotated[
    str | None,
    Field(description="Branch to commit to; with createBranch: true a new one (default: a generated name)."),
]
CreateBranch = Annotated[
    bool | None, Field(description="true: work on a separate branch, ready for review. Recommended.")
]
RootDirectory = Annotated[str | None, Field(description="Monorepo subpath to work in.")]
ConversationId = Annotated[
    str | None, Field(description="Continue this Mogplex conversation (id from the Mogplex app).")
]
WorkspaceSessionId = Annotated[
    str | None, Field(description="Run in this existing Mogplex workspace session (id from the app).")
]
RunMode = Literal["SAFE", "YOLO", "AUTO"]  # what the API documents; the harness upper-cases what it is sent


def _upper_mode(value: object) -> object:
    """ "safe" means SAFE (the harness upper-cases it): sent normalised; "" is unset; anything else fails the enum."""
    return (value.strip().upper() or None) if isinstance(value, str) else value


Mode = Annotated[
    RunMode | None,
    BeforeValidator(_upper_mode),
    Field(description="Agent autonomy: SAFE, YOLO or AUTO (the default). Any case; other values are refused."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Optional. Same key + same arguments = the same run, never a second one. "
        "Omit it: identical starts within 10 minutes are de-duplicated automatically.",
        max_length=IDEMPOTENCY_KEY_MAX_CHARS,
    ),
]


def _add_start_run(server: MCPServer[Any]) -> None:
    @tool(
        server,
        "start_run",
        "Start a coding-agent run",
        ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=True),
    )
    async def start_run(
        ctx: Context[Any, Any],
        repoId: RepoId,
        prompt: Prompt,
        harness: HarnessArg = None,
        baseBranch: BaseBranch = None,
        workingBranch: WorkingBranch = None,
        createBranch: CreateBranch = None,
        rootDirectory: RootDirectory = None,
        conversationId: ConversationId = None,
        workspaceSessionId: WorkspaceSessionId = None,
        mode: Mode = None,
        idempotencyKey: IdempotencyKey = None,
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
        request = _start_request(repoId, prompt, optional, idempotencyKey)
        state = app_state(ctx)
        if request is None:  # never a start: a name is looked up (read-only) so that the refusal can name its id
            raise await name_error(ctx, state, repoId)
        token = require_token(ctx, state)
        result = await start(state, token, request, idempotencyKey)
        if request.conversation_id or request.workspace_session_id:  # what continue_run may carry over
            sent = RunFacts(conversation_id=request.conversation_id, workspace_session_id=request.workspace_session_id)
            await state.remember_facts(token, result.run.run_id, sent)
        return result


def _start_request(
    repo_id: str, prompt: str, optional: dict[str, Any], idempotency_key: str | None
) -> StartRunRequest | None:
    """start_run's arguments checked into the request to send; invalid ones are refused before anything is sent.

    None: every argument is valid but repoId is a repository name, which only a lookup can answer.
    """
    # Models often send "" for an optional field they mean to leave out; the service treats it as unset too.
    given = {name: value for name, value in optional.items() if not (isinstance(value, str) and not value.strip())}
    named = bool(repo_id.strip()) and not is_uuid(repo_id.strip())  # "web", "acme/web", or junk
    fields = {"repoId": _ANY_ID if named else repo_id, "prompt": prompt, **given}
    try:  # every other argument's problem first, then the name's: one error names them all in turn
        request = StartRunRequest.model_validate(fields)
    except ValidationError as exc:
        raise validation_error("start_run", exc) from None
    if idempotency_key is not None and (problem := idempotency_key_problem(idempotency_key)):
        raise ToolError(f"invalid arguments: idempotencyKey {problem}. Nothing was sent to Mogplex.")
    if named:
        if not looks_like_name(repo_id):
            raise not_an_id_error(repo_id)
        return None
    return request


_ANY_ID = "00000000-0000-4000-8000-000000000000"  # stands in for a named repoId while the rest is validated


def _add_get_run(server: MCPServer[Any]) -> None:
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
        judged = await judge(state, token, snap)
        return GetRunResult(
            summary=judged.summary,
            next_steps=guidance.next_steps(judged.outcome, caller="get_run"),
            run=judged.view,
        )


def _add_cancel_run(server: MCPServer[Any]) -> None:
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
        judged = await judge(state, token, snap)
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


@dataclass(frozen=True)
class FollowUp:
    """A start that continues a finished run: it commits onto that run's branch (and so its pull request)."""

    branch: str
    pull_request_url: str | None

    def where(self) -> str:
        """Where the follow-up's commits land, in words (after "on branch <branch>")."""
        if self.pull_request_url:
            number = self.pull_request_url.rstrip("/").rsplit("/", 1)[-1]
            label = f"#{number}" if number.isdigit() else self.pull_request_url
            pr = f"{label}: {self.pull_request_url}" if label != self.pull_request_url else label
            return f" (it commits onto {self.branch}, so it updates the existing pull request {pr})"
        return f" (it commits onto {self.branch}, the earlier run's working branch)"


async def start(
    state: AppState, token: str, request: StartRunRequest, explicit_key: str | None, follow_up: FollowUp | None = None
) -> StartRunResult:
    """Start `request` once (runs/start.py: claim, send, record) and say what happened (start_run, continue_run)."""
    fingerprint = token_fingerprint(token)
    body_hash = request_fingerprint(state.settings.base_url, request.to_wire(), token=token)
    once = StartRequest(request, fingerprint, body_hash, explicit_key)
    try:
        sent = await start_once(
            state.start_claims,
            once,
            window=lambda: upstream("start the run", token, state.budget, argument="repoId"),
            client=lambda: state.client(token),
        )
    except StartClaimsUnavailableError as exc:  # a fresh key could start a second run: nothing was sent
        raise claims_unavailable_error(exc) from None
    await state.remember(token, sent.started.run, title=request.prompt)
    return await _started_result(state, token, sent.started, sent.claim, request, follow_up)


async def _started_result(
    state: AppState,
    token: str,
    started: StartedRun,
    claim: KeyClaim | None,
    request: StartRunRequest,
    follow_up: FollowUp | None,
) -> StartRunResult:
    run: RunDetail = started.run
    state.notes.note_root_directory(token_fingerprint(token), run.run_id, run.root_directory)
    snap = RunSnapshot(run, [], False)
    if started.replayed and run.terminal:  # a finished run's real outcome, not nulls
        with anyio.move_on_after(state.budget) as scope:
            snap = await snapshot_of(state, token, run, time.monotonic() + state.budget)
        if scope.cancelled_caught:  # the run exists either way: report it, its delivery unknown
            snap = RunSnapshot(run, [], window_exhausted=False, saw_last_events=False)
    judged = await judge(state, token, snap)
    repeated = started.replayed and not started.recovered
    # A follow-up commits onto the earlier run's branch on purpose: that is not "straight onto the base branch".
    to_default = not request.create_branch and request.working_branch is None and follow_up is None
    return StartRunResult(
        summary=clean_text(_start_summary(started, claim, judged, to_default, follow_up), token),
        next_steps=guidance.after_start(judged.outcome, repeated=repeated, to_default_branch=to_default),
        run=judged.view,
        replayed=started.replayed,
        recovered=started.recovered,
        idempotency_key=started.idempotency_key,
    )


def _start_summary(
    started: StartedRun, claim: KeyClaim | None, judged: JudgedRun, to_default: bool, follow_up: FollowUp | None
) -> str:
    view = judged.view
    where = f" on branch {view.working_branch}" if view.working_branch else ""
    standing = judged.summary
    if follow_up is not None:
        where += follow_up.where()
    elif to_default and not judged.outcome.terminal:
        where += " (straight onto the base branch: no separate branch for review)"
    if started.recovered:
        got = started.retried_after or "no answer"
        return (
            f"Started run {view.run_id}{where}: Mogplex accepted the start but the first attempt got {got} "
            f"instead of the run; this server's retry with the same key recovered it (no second run). {standing}"
        )
    if started.replayed:
        ago = f" from {int(claim.age_seconds)} s ago" if claim and claim.reused else ""
        return f"Replayed an identical earlier start{ago}; no second run was started. {standing}"
    return f"Started run {view.run_id} ({view.harness or 'codex'}){where}. {standing}"
