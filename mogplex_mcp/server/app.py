"""`create_server(settings)`: the MCP server, its lifespan (HTTP pool, journal, followers) and prompt."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError

from mogplex_mcp import __version__
from mogplex_mcp.api.limits import CALLER
from mogplex_mcp.api.stream import stream_clients
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.backends import open_backends
from mogplex_mcp.runs.follower import FollowerHub, FollowSettings
from mogplex_mcp.runs.identities import remember_verified
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.outcome_recorder import outcome_recorder
from mogplex_mcp.runs.readiness import Readiness
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.runs.store_budget import store_budget
from mogplex_mcp.server import guidance, viewer
from mogplex_mcp.server.call_log import ToolCallObserver
from mogplex_mcp.server.errors import validation_error, with_tool_name
from mogplex_mcp.server.prompts import register_prompts
from mogplex_mcp.server.resources.run_resources import register_resources
from mogplex_mcp.server.results import result_text
from mogplex_mcp.server.state import AppState, HttpPool, follower_client_factory
from mogplex_mcp.server.tools.arguments import lean_schema, unknown_arguments_error
from mogplex_mcp.server.tools.event_tools import register_event_tools
from mogplex_mcp.server.tools.orchestration import register_orchestration_tools
from mogplex_mcp.server.tools.run_tools import register_run_tools

logger = logging.getLogger("mogplex_mcp.server")

WRITE_TOOLS = frozenset({"start_run", "cancel_run", "continue_run"})


class MogplexServer(MCPServer[AppState]):
    """MCPServer that checks every tool call's argument names, never echoes rejected values (secrets,
    100k-char prompts), publishes lean schemas, and answers bad prompt arguments with -32602.

    Each tool call and resource read gets one budget for all its shared-store (Redis) commands together
    (`store_budget_seconds`, Settings.redis_call_budget_seconds), so a slow Redis cannot stretch a call.
    """

    store_budget_seconds: float = Settings.redis_call_budget_seconds

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().add_tool(fn, name, *args, **kwargs)
        tool = self._tool_manager.get_tool(name or fn.__name__)
        if tool is not None:  # every tool, present and future: closed input schemas, no generated titles
            tool.parameters = lean_schema(tool.parameters, closed=True)
            if tool.fn_metadata.output_schema is not None:
                tool.fn_metadata.output_schema = lean_schema(tool.fn_metadata.output_schema, closed=False)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is None:  # a protocol error, not a tool's answer: -32602, naming the tools there are
            known = ", ".join(t.name for t in self._tool_manager.list_tools())
            why = " (this server runs --read-only: it offers no tool that starts or cancels runs)"
            hidden = why if name in WRITE_TOOLS else ""
            raise MCPError(INVALID_PARAMS, f"Unknown tool {clean_text(name)[:80]!r}{hidden}; tools: {known}.")
        if unknown := unknown_arguments_error(name, arguments, tool.parameters):
            raise with_tool_name(name, str(unknown))
        try:
            with store_budget(self.store_budget_seconds):
                result = await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK's generic text, nothing of the exception reaches the model
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise with_tool_name(name, str(validation_error(name, exc.__cause__))) from None
            raise with_tool_name(name, str(exc)) from None
        return _short_text(result)

    async def read_resource(self, uri: Any, context: Context[AppState, Any] | None = None) -> Any:
        with store_budget(self.store_budget_seconds):
            return await super().read_resource(uri, context)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[AppState, Any] | None = None
    ) -> Any:
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is None:
            known = ", ".join(p.name for p in self._prompt_manager.list_prompts())
            raise MCPError(INVALID_PARAMS, f"Unknown prompt {clean_text(name)[:80]!r}; prompts: {known}.")
        given = arguments or {}
        missing = [arg.name for arg in prompt.arguments or [] if arg.required and not given.get(arg.name)]
        if missing:
            raise MCPError(INVALID_PARAMS, f"Prompt {name} needs the argument(s): {', '.join(missing)}.")
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            cause = _validation_cause(exc)
            if cause is not None:
                raise MCPError(INVALID_PARAMS, f"Prompt {name}: {validation_error(name, cause, sends=False)}") from None
            raise


def _validation_cause(exc: BaseException) -> ValidationError | None:
    """The pydantic error behind the SDK's wrappers ("Error rendering prompt …"), if one is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ValidationError):
            return seen
        seen = seen.__cause__
    return None


def create_server(
    settings: Settings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    journal: StartJournal | None = None,
    follow: FollowSettings | None = None,
    on_state: Callable[[AppState], None] | None = None,
    readiness: Readiness | None = None,
    stateless: bool = False,
) -> MogplexServer:
    """Build the server. `transport` and `journal` are test seams; `on_state` sees the lifespan state;
    `readiness` is what /readyz asks (the lifespan adds its checks: the journal, Redis); `stateless`: served
    over HTTP without sessions (advertise only what that mode delivers)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        ready = readiness or Readiness()
        async with open_state(settings, ready, transport=transport, journal=journal, follow=follow) as (state, tg):
            resources.attach(state, tg)
            if on_state is not None:
                on_state(state)
            ready.started = True
            yield state

    server = MogplexServer(
        "mogplex",
        title="Mogplex",
        version=__version__,
        instructions=guidance.INSTRUCTIONS,
        website_url="https://mogplex.com",
        lifespan=lifespan,
        log_level="WARNING",
        extensions=[viewer.extension(settings)],
        # Metrics and one log line per tool call (inside the SDK's own OpenTelemetry span).
        middleware=[ToolCallObserver(lambda name: server._tool_manager.get_tool(name) is not None)],
    )
    server.store_budget_seconds = settings.redis_call_budget_seconds
    register_run_tools(server)
    register_event_tools(server)
    register_orchestration_tools(server)
    register_prompts(server)
    resources = register_resources(server, stateless=stateless)
    server.middleware.append(refuse_foreign_cursors)
    if settings.read_only:
        for name in WRITE_TOOLS:
            server.remove_tool(name)
    viewer.install(server)
    server.middleware.append(_note_caller)
    return server


async def _note_caller(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Who is asking (the HTTP client's address), for the upstream gate's fair queue of unverified tokens."""
    client = getattr(ctx.request, "client", None)
    host = getattr(client, "host", None)
    if not isinstance(host, str):
        return await call_next(ctx)
    token = CALLER.set(host)
    try:
        return await call_next(ctx)
    finally:
        CALLER.reset(token)


def _short_text(result: Any) -> Any:
    """A successful result's text is the summary, the steps and compact details (see `result_text`)."""
    if isinstance(result, CallToolResult) and result.structured_content and not result.is_error:
        return result.model_copy(update={"content": [TextContent(text=result_text(result.structured_content))]})
    return result


_UNPAGED = ("tools/list", "prompts/list", "resources/templates/list")


async def refuse_foreign_cursors(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """These lists are one page and give out no cursor, so any cursor is invalid (-32602), never ignored."""
    if ctx.method in _UNPAGED and isinstance(ctx.params, Mapping) and ctx.params.get("cursor") is not None:
        raise MCPError(INVALID_PARAMS, f"Invalid cursor: {ctx.method} is one page; call it without a cursor.")
    return await call_next(ctx)


def watch_health(
    readiness: Readiness, journal: StartJournal, store_problem: Callable[[], Awaitable[str | None]] | None
) -> None:
    """The lifespan's readiness checks: the start journal takes a write; the configured Redis answers."""

    async def journal_problem() -> str | None:
        return await anyio.to_thread.run_sync(journal.problem)

    readiness.add_check("journal", journal_problem)
    if store_problem is not None:
        readiness.add_check("redis", store_problem)


async def tool_names(server: MCPServer[Any]) -> list[str]:
    """The registered tools' names, in registration order (for docs and the bundle manifest)."""
    return [tool.name for tool in await server.list_tools()]


@asynccontextmanager
async def open_state(
    settings: Settings,
    ready: Readiness,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    journal: StartJournal | None = None,
    follow: FollowSettings | None = None,
) -> AsyncIterator[tuple[AppState, TaskGroup]]:
    """One lifespan's state: the journal, the upstream pools, the chosen store backends and the follower hub,
    with the task group the followers run in (cancelled when the block ends); `ready` gets the health checks
    (journal, Redis) and the drain and exit hooks, and is not started any more once the block ends."""
    own_journal = journal is None
    the_journal = journal or StartJournal.in_state_dir(
        settings.state_dir,
        window_seconds=settings.dedupe_window_seconds,
        wait_seconds=settings.journal_wait_seconds,
    )
    pool = HttpPool(settings, transport)
    following = follow or FollowSettings(
        requests_per_minute=settings.follow_requests_per_minute,
        max_bytes_per_run=settings.run_event_bytes,
        max_cache_bytes=settings.event_cache_bytes,
    )
    per_minute = following.requests_per_minute
    try:
        async with (
            open_backends(settings, the_journal, per_minute) as backends,
            anyio.create_task_group() as tg,
        ):
            await remember_verified(pool.gate, backends.verified, tg, shared=backends.shared)
            streams = stream_clients(pool.streams, gate=pool.gate, max_event_bytes=settings.max_stream_event_bytes)
            hub = FollowerHub(
                tg,
                follower_client_factory(settings, pool.get, pool.gate),
                following,
                make_stream=streams,
                make_pacer=backends.make_pacer,
                coordinator=backends.coordinator,
                verified=pool.gate.verified_fingerprint,
                known_verified=pool.gate.known_verified,
            )
            state = AppState(
                settings=settings,
                pool=pool,
                journal=the_journal,
                hub=hub,
                start_claims=backends.claims,
                known_runs=backends.known,
                readiness=ready,
            )
            watch_health(ready, the_journal, backends.store_problem)
            # A background task that keeps crashing (runs/health.py) is a readiness problem until it recovers.
            hub.health.on_problem.append(ready.report_failure)
            hub.health.on_recovered.append(ready.report_ok)
            ready.on_drain(hub.hand_over)
            ready.on_exit(the_journal.close)  # a forced exit still writes through claims held in memory
            hub.add_listener(outcome_recorder(state.known_runs))  # list_runs knows finished runs' outcomes
            yield state, tg
            tg.cancel_scope.cancel()
    finally:
        ready.started = False
        await pool.aclose()
        if own_journal:
            the_journal.close()
