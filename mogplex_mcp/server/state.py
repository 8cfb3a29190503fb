"""What the server holds while it runs: settings, the shared HTTP pool, the journal, the followers."""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp.server.mcpserver import Context

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import MogplexError, PermissionDeniedError, UpstreamTimeoutError
from mogplex_mcp.api.limits import GateLimits, UpstreamGate
from mogplex_mcp.api.models import RunDetail
from mogplex_mcp.api.pool import make_http_client, make_stream_client
from mogplex_mcp.api.retry import RetryPolicy
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.fingerprints import clean_title, token_fingerprint
from mogplex_mcp.runs.follower import FollowerHub
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.notes import RunNotebook
from mogplex_mcp.runs.readiness import Readiness
from mogplex_mcp.runs.store import KnownRuns, RunFacts, StartClaims, facts_of
from mogplex_mcp.server.errors import missing_token_error, tool_error


class HttpPool:
    """The upstream's two connection pools, built on first use, and the gate every client passes.

    Requests (`get()`) and event streams (`streams()`) never share connections: a stream holds its
    connection for minutes, so followers could otherwise starve every tool call. Building a pool
    imports the transport stack and makes a TLS context (~36 ms): a cost the server's startup — which
    hosts wait on before `initialize` — should not pay.
    """

    def __init__(self, settings: Settings, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._client: httpx2.AsyncClient | None = None
        self._stream_client: httpx2.AsyncClient | None = None
        self.gate = UpstreamGate(GateLimits.from_settings(settings))

    def get(self) -> httpx2.AsyncClient:
        """The request pool."""
        if self._client is None:
            self._client = make_http_client(self._settings, transport=self._transport)
        return self._client

    def streams(self) -> httpx2.AsyncClient:
        """The event-stream pool."""
        if self._stream_client is None:
            self._stream_client = make_stream_client(self._settings, transport=self._transport)
        return self._stream_client

    async def aclose(self) -> None:
        for client in (self._client, self._stream_client):
            if client is not None:
                await client.aclose()
        self._client = self._stream_client = None


REMEMBERED_MAX = 2_000


@dataclass
class AppState:
    """The lifespan's value. Holds no per-user data: tokens arrive with each request."""

    settings: Settings
    pool: HttpPool
    journal: StartJournal
    hub: FollowerHub
    # Where start_run claims Idempotency-Keys and where the runs list lives: chosen by runs/backends.py.
    start_claims: StartClaims
    known_runs: KnownRuns
    # Called with (token fingerprint, runId) when a run is new to that token's resources/list.
    on_new_run: list[Callable[[str, str], Awaitable[None]]] = field(default_factory=list)
    # What GET does not say about a run (its rootDirectory, a cancel this server asked for).
    notes: RunNotebook = field(default_factory=RunNotebook)
    # What the journal last heard per (token fingerprint, run): repeated reads skip the SQLite write.
    _remembered: dict[tuple[str, str], str] = field(default_factory=dict)
    # Per client connection (weakly held: gone with it), (token fingerprint, run) -> the last event id a
    # wait_for_run gave it: a wait without afterEventId shows only events new to that caller.
    wait_cursors: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], str]] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    # The finished-run outcome last written per (token fingerprint, run): repeated reads skip the write.
    recorded: dict[tuple[str, str], RunFacts] = field(default_factory=dict)
    # Runs whose notes were looked up in the journal once (a restarted server learns their rootDirectory).
    _recalled: set[tuple[str, str]] = field(default_factory=set)
    # What /readyz reports, and the drain (SIGTERM) that cuts waits short (runs/readiness.py).
    readiness: Readiness = field(default_factory=Readiness)

    @property
    def http(self) -> httpx2.AsyncClient:
        return self.pool.get()

    @property
    def budget(self) -> float:
        """Seconds one tool call may spend upstream, retries included: well inside hosts' 60 s limits."""
        return self.settings.retry_budget_seconds + 5.0

    async def remember(self, token: str, run: RunDetail, *, title: str | None = None) -> None:
        """Record a run this server started or looked at (for resources/list); announce new ones."""
        key = (token_fingerprint(token), run.run_id)
        await self._recall(key, run)
        if title is None and self._remembered.get(key) == run.status:
            return
        # Redacted (patterns and this caller's own token) before it reaches the journal file.
        short_title = clean_title(title.strip().splitlines()[0], token) if title and title.strip() else None
        new = await self.known_runs.remember_run(
            key[0], run.run_id, title=short_title, status=run.status, repo_id=run.repo_id, facts=facts_of(run)
        )
        if new is None:  # skipped: the journal was busy or failing; try again on the next sighting
            return
        if len(self._remembered) >= REMEMBERED_MAX:
            self._remembered.clear()
        self._remembered[key] = run.status
        if new:
            for announce in self.on_new_run:
                await announce(key[0], run.run_id)

    async def _recall(self, key: tuple[str, str], run: RunDetail) -> None:
        """Once per run and process: what the journal kept that a GET does not return (the rootDirectory).

        So one view of a run holds across a restart: the start's rootDirectory is in the journal's facts.
        """
        if run.root_directory or key in self._recalled or self.notes.get(*key).root_directory:
            return
        if len(self._recalled) >= REMEMBERED_MAX:
            self._recalled.clear()
        self._recalled.add(key)
        known = await self.known_runs.known_run(*key)
        if known is not None and known.facts.root_directory:
            self.notes.note_root_directory(key[0], run.run_id, known.facts.root_directory)

    async def remember_facts(self, token: str, run_id: str, facts: RunFacts) -> bool:
        """Record more of what is known of a run (e.g. the conversation ids this server sent for it).

        False when the write was skipped (the journal was busy or failing): the caller may try again.
        """
        written = await self.known_runs.remember_run(token_fingerprint(token), run_id, facts=facts)
        return written is not None

    async def confirm_token(self, token: str, deadline: float) -> None:
        """Cached run data goes only to a token upstream accepted within `recheck_token_seconds` (issue 23, #7).

        Raises the 401 at once when upstream refused this token lately; otherwise, when its last acceptance is
        older, asks upstream (one cheap request) before anything cached is shown: a revoked token gets the
        401, not the runs it could once read.
        """
        gate = self.pool.gate
        gate.check_rejected(token, "show cached run data")
        if gate.accepted_within(token_fingerprint(token), self.settings.recheck_token_seconds):
            return
        try:
            async with self.client(token) as api:
                await api.list_repos(limit=1, deadline=deadline)
        except PermissionDeniedError:
            return  # a known user without the read scope: accepted (production does not check it for GETs)

    def client(self, token: str | None) -> MogplexClient:
        return MogplexClient.from_settings(self.settings, token=token, http=self.http, gate=self.pool.gate)


def follower_client_factory(
    settings: Settings, http: Callable[[], httpx2.AsyncClient], gate: UpstreamGate | None = None
) -> Callable[[str], MogplexClient]:
    """Clients for followers. They poll often, so no retries inside a poll: the next poll is the retry."""
    policy = dataclasses.replace(RetryPolicy.from_settings(settings), max_retries=0)

    def make(token: str) -> MogplexClient:
        return MogplexClient.from_settings(settings, token=token, http=http(), retry=policy, gate=gate)

    return make


def token_from_request(headers: Mapping[str, str] | None, settings: Settings) -> str | None:
    """The PAT for this request: the caller's own `Authorization: Bearer` over HTTP, else the configured one.

    The one place that decides whose token a call uses. Over HTTP (headers present) a bearer sent by the
    caller always wins and is never stored; `settings.token` is the fallback only when the transport allows
    it (stdio, or an HTTP server bound to loopback — see `Settings.http_token_fallback`).
    """
    if headers is not None:
        value = headers.get("authorization") or headers.get("Authorization")
        if value:
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
        if not settings.http_token_fallback:
            return None
    return settings.token


def app_state(ctx: Context[Any, Any]) -> AppState:
    state = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):  # only when a tool is called outside create_server's lifespan
        raise RuntimeError("mogplex-mcp server state is missing: build the server with create_server()")
    return state


def require_token(ctx: Context[Any, Any], state: AppState) -> str:
    """This request's token, or the ToolError that says how to configure one."""
    token = token_from_request(ctx.headers, state.settings)
    if not token:
        raise missing_token_error()
    return token


@asynccontextmanager
async def upstream(
    action: str, token: str | None, budget_seconds: float, *, argument: str = "runId"
) -> AsyncIterator[float]:
    """Run upstream calls for one tool: yields their deadline; turns failures into ToolErrors.

    The hard cap (`fail_after`) is a backstop above the client's own deadline handling, so a tool
    returns inside its bound even if something below ignores the deadline.
    """
    deadline = time.monotonic() + budget_seconds
    try:
        with anyio.fail_after(budget_seconds + 2.0):
            yield deadline
    except MogplexError as exc:
        raise tool_error(exc, action, token=token, argument=argument) from None
    except TimeoutError:
        raise tool_error(UpstreamTimeoutError("deadline reached"), action, token=token, argument=argument) from None
