"""`create_server(settings)`: the MCP server, its lifespan (HTTP pool, journal, followers) and prompt."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from mogplex_mcp import __version__
from mogplex_mcp.api.stream import stream_clients
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.follower import FollowerHub, FollowSettings
from mogplex_mcp.runs.journal import StartJournal
from mogplex_mcp.runs.outcome_recorder import outcome_recorder
from mogplex_mcp.server import guidance, viewer
from mogplex_mcp.server.backends import open_backends
from mogplex_mcp.server.errors import validation_error
from mogplex_mcp.server.event_tools import register_event_tools
from mogplex_mcp.server.orchestration import register_orchestration_tools
from mogplex_mcp.server.prompts import register_prompts
from mogplex_mcp.server.resources import register_resources
from mogplex_mcp.server.state import AppState, HttpPool, follower_client_factory
from mogplex_mcp.server.tools import register_run_tools

logger = logging.getLogger("mogplex_mcp.server")

WRITE_TOOLS = frozenset({"start_run", "cancel_run", "continue_run"})


class MogplexServer(MCPServer[AppState]):
    """MCPServer whose argument errors never echo the rejected values (secrets, 100k-char prompts)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise validation_error(name, exc.__cause__) from None
            raise


def create_server(
    settings: Settings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    journal: StartJournal | None = None,
    follow: FollowSettings | None = None,
    on_state: Callable[[AppState], None] | None = None,
) -> MogplexServer:
    """Build the server. `transport` and `journal` are test seams; `on_state` sees the lifespan state."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        own_journal = journal is None
        the_journal = journal or StartJournal.in_state_dir(
            settings.state_dir,
            window_seconds=settings.dedupe_window_seconds,
            wait_seconds=settings.journal_wait_seconds,
        )
        pool = HttpPool(settings, transport)
        following = follow or FollowSettings(requests_per_minute=settings.follow_requests_per_minute)
        per_minute = following.requests_per_minute
        try:
            async with (
                open_backends(settings, the_journal, per_minute) as backends,
                anyio.create_task_group() as tg,
            ):
                streams = stream_clients(pool.streams, gate=pool.gate, max_event_bytes=settings.max_stream_event_bytes)
                hub = FollowerHub(
                    tg,
                    follower_client_factory(settings, pool.get, pool.gate),
                    following,
                    make_stream=streams,
                    make_pacer=backends.make_pacer,
                    coordinator=backends.coordinator,
                )
                state = AppState(
                    settings=settings,
                    pool=pool,
                    journal=the_journal,
                    hub=hub,
                    claims=backends.claims,
                    known=backends.known,
                )
                hub.add_listener(outcome_recorder(state.known_runs))  # list_runs knows finished runs' outcomes
                resources.attach(state, tg)
                if on_state is not None:
                    on_state(state)
                yield state
                tg.cancel_scope.cancel()
        finally:
            await pool.aclose()
            if own_journal:
                the_journal.close()

    server = MogplexServer(
        "mogplex",
        title="Mogplex",
        version=__version__,
        instructions=guidance.INSTRUCTIONS,
        website_url="https://mogplex.com",
        lifespan=lifespan,
        log_level="WARNING",
        extensions=[viewer.extension(settings)],
    )
    register_run_tools(server)
    register_event_tools(server)
    register_orchestration_tools(server)
    register_prompts(server)
    resources = register_resources(server)
    if settings.read_only:
        for name in WRITE_TOOLS:
            server.remove_tool(name)
    viewer.install(server)
    return server


async def tool_names(server: MCPServer[Any]) -> list[str]:
    """The registered tools' names, in registration order (for docs and the bundle manifest)."""
    return [tool.name for tool in await server.list_tools()]
