"""The v1 API routes: repos, start, get, events, cancel — auth, limits and validation in production's order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mogplex_mcp.emulator.responses import base_url, error, login_redirect, ok, platform_500, unauthorized
from mogplex_mcp.emulator.runs import Run
from mogplex_mcp.emulator.scenarios import SCENARIOS, scenario_in
from mogplex_mcp.emulator.validation import (
    HARNESSES,
    NEWER_HARNESSES,
    RequestInvalid,
    StartRequest,
    idempotency_key,
    is_uuid,
    parse_limit,
    parse_start_request,
)

if TYPE_CHECKING:
    from mogplex_mcp.emulator.app import Emulator

API = "/api/v1/mogplex"
LOGIN_PAGE = "<!doctype html><html><head><title>Sign in · Mogplex</title></head><body><h1>Sign in</h1></body></html>"


class RunsApi:
    """Handlers of the public API, bound to one emulator's state."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.observed = emulator.config.flavor == "observed"

    def routes(self) -> list[Route]:
        return [
            Route(f"{API}/repos", self.list_repos, methods=["GET"]),
            Route(f"{API}/runs", self.start_run, methods=["POST"]),
            Route(f"{API}/runs/{{run_id}}", self.get_run, methods=["GET"]),
            Route(f"{API}/runs/{{run_id}}/events", self.list_events, methods=["GET"]),
            Route(f"{API}/runs/{{run_id}}/cancel", self.cancel_run, methods=["POST"]),
            Route("/.well-known/oauth-protected-resource", self.resource_metadata, methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
        ]

    def guard(self, request: Request, scope: str | None) -> str | Response:
        """The caller's token, or the answer for a missing/unknown token, the per-PAT limit or a scope."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return login_redirect(request) if self.observed else unauthorized(request)
        scopes = self.emu.config.tokens.get(token)
        if scopes is None:
            return unauthorized(request)
        retry_after = self.emu.limits.admit_request(token, self.emu.clock())
        if retry_after is not None:
            return error("RATE_LIMITED", "Rate limit exceeded", retry_after=retry_after)
        if scope is not None and scope not in scopes:
            return error("FORBIDDEN", f"Missing required scope: {scope}")
        return token

    def read_scope(self) -> str | None:
        """The documented API checks `read` on GETs; production does not."""
        return None if self.observed else "read"

    def find_run(self, request: Request, caller: str) -> Run | Response:
        """The run in the path if `caller`'s user owns it; a missing run and another user's look alike (404)."""
        run_id = str(request.path_params["run_id"])
        if not is_uuid(run_id):
            return platform_500() if self.observed else error("NOT_FOUND", "Run not found")
        run = self.emu.store.get(run_id)
        if run is None or run.owner != self.emu.config.owner_of(caller):
            return error("NOT_FOUND", "Run not found")
        return run

    async def list_repos(self, request: Request) -> Response:
        caller = self.guard(request, self.read_scope())
        if isinstance(caller, Response):
            return caller
        try:
            limit = parse_limit(request.query_params.get("limit"), strict=not self.observed)
        except RequestInvalid as exc:
            return error("BAD_REQUEST", str(exc))
        repos = sorted(self.emu.config.repos, key=lambda repo: str(repo["full_name"]))
        wanted_id, query = request.query_params.get("id"), request.query_params.get("q")
        if wanted_id:
            repos = [repo for repo in repos if str(repo["id"]).lower() == wanted_id.strip().lower()]
        elif query:
            repos = [repo for repo in repos if query.strip().lower() in str(repo["full_name"]).lower()]
        return ok({"repos": [dict(repo) for repo in repos[:limit]]})

    async def start_run(self, request: Request) -> Response:
        caller = self.guard(request, "write")
        if isinstance(caller, Response):
            return caller
        if caller in self.emu.config.automation_only:
            return error("AUTOMATION_REQUIRED", "This API key can only be used to run automations")
        try:
            key = idempotency_key(request.headers.get("idempotency-key"))
        except RequestInvalid as exc:
            return error("BAD_REQUEST", str(exc))
        retry_after = self.emu.limits.spend_start(caller, self.emu.clock())
        if retry_after is not None:
            return error("RATE_LIMITED", "Run start limit exceeded", retry_after=retry_after)
        try:
            newer = self.emu.config.event_style == "newer"
            start = parse_start_request(await request.body(), NEWER_HARNESSES if newer else HARNESSES)
            scenario = self.scenario(start.prompt)
        except RequestInvalid as exc:
            return error("BAD_REQUEST", str(exc))
        repo = self.repo(start.repo_id)
        if repo is None:
            return error("NOT_FOUND", "Repository not found")
        return self.start_or_replay(start, repo, scenario, key, self.emu.config.owner_of(caller))

    def scenario(self, prompt: str) -> str:
        name = scenario_in(prompt) or self.emu.config.default_scenario
        if name not in SCENARIOS:
            raise RequestInvalid(f"Unknown emulator scenario {name!r}; known: {', '.join(SCENARIOS)}")
        return name

    def repo(self, repo_id: str) -> dict[str, Any] | None:
        return next((repo for repo in self.emu.config.repos if str(repo["id"]).lower() == repo_id.lower()), None)

    def start_or_replay(
        self, start: StartRequest, repo: dict[str, Any], scenario: str, key: str, owner: str
    ) -> Response:
        """Replay the run `owner`'s Idempotency-Key names, refuse a different body under it, or start a new run."""
        now = self.emu.clock()
        entry = self.emu.store.key(key, owner)
        if entry is not None:
            if entry.fingerprint != start.fingerprint():
                return error("IDEMPOTENCY_CONFLICT", "Idempotency-Key was already used with a different request body")
            replayed = self.emu.store.get(entry.run_id)
            if replayed is not None:
                return ok(replayed.started(now, replayed=True), 202)
        try:
            run = self.emu.store.create(start, repo, scenario, key, now, owner)
        except RequestInvalid as exc:
            return error("BAD_REQUEST", str(exc))
        if run.scenario == "queue_failure":
            return error("INTERNAL_ERROR", "Failed to queue run")
        return ok(run.started(now, replayed=False), 202)

    async def get_run(self, request: Request) -> Response:
        caller = self.guard(request, self.read_scope())
        if isinstance(caller, Response):
            return caller
        run = self.find_run(request, caller)
        if isinstance(run, Response):
            return run
        return ok({"run": run.detail(self.emu.clock())})

    async def list_events(self, request: Request) -> Response:
        caller = self.guard(request, self.read_scope())
        if isinstance(caller, Response):
            return caller
        run = self.find_run(request, caller)
        if isinstance(run, Response):
            return run
        try:
            limit = parse_limit(request.query_params.get("limit"), strict=not self.observed)
        except RequestInvalid as exc:
            return error("BAD_REQUEST", str(exc))
        now = self.emu.clock()
        return ok({"run": run.detail(now), "events": run.events(now)[:limit]})

    async def cancel_run(self, request: Request) -> Response:
        caller = self.guard(request, "write")
        if isinstance(caller, Response):
            return caller
        run = self.find_run(request, caller)
        if isinstance(run, Response):
            return run
        now = self.emu.clock()
        outcome = run.cancel(now, self.emu.config.flavor)
        if outcome == "conflict":
            return error("CONFLICT", "Sandbox is unreachable")
        detail = run.detail(now)
        if self.observed:
            return ok({"run": detail, "status": detail["status"], "alreadyTerminal": outcome == "already_terminal"})
        status = "already_terminal" if outcome == "already_terminal" else "cancellation_requested"
        return ok({"run": detail, "status": status})

    async def resource_metadata(self, request: Request) -> Response:
        base = base_url(request)
        return JSONResponse(
            {
                "resource": base,
                "authorization_servers": [base],
                "scopes_supported": ["read", "write"],
                "bearer_methods_supported": ["header"],
            }
        )

    async def login_page(self, request: Request) -> Response:
        return HTMLResponse(LOGIN_PAGE)
