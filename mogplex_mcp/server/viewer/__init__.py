"""The live run viewer (MCP Apps): one `ui://` card, bound to the tools whose result is one run.

`extension(settings)` is the Apps extension (the HTML resource, the advertised capability) to pass to the
server's constructor; `install(server)` then stamps `_meta.ui.resourceUri` on the bound tools — in
`tools/list` answers to clients that negotiated MCP Apps only, so every other client sees what it saw before.
"""

from __future__ import annotations

from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, ResourcePermissions, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import FunctionResource

from mogplex_mcp import __version__
from mogplex_mcp.config import Settings
from mogplex_mcp.server.viewer.page import render

VIEWER_URI = "ui://mogplex/run-viewer.html"
# The tools whose result is one run (`structuredContent.run`): their calls open the viewer. A name not
# registered (continue_run before it exists, start_run under --read-only) is simply not bound.
RUN_TOOLS: tuple[str, ...] = ("start_run", "get_run", "wait_for_run", "continue_run")
# How long each of the viewer's wait_for_run calls waits. The server's follower of the run answers them, so
# the pace costs the upstream nothing; it only bounds how stale the card can be.
REFRESH_WAIT_SECONDS = 2.0

__all__ = ["REFRESH_WAIT_SECONDS", "RUN_TOOLS", "VIEWER_URI", "extension", "install", "viewer_html"]


def viewer_html(settings: Settings) -> str:
    """The document this server serves at VIEWER_URI (no Cancel button when the server is read-only)."""
    wait = min(REFRESH_WAIT_SECONDS, settings.wait_max_seconds)
    return render(can_cancel=not settings.read_only, wait_seconds=wait, version=__version__)


def extension(settings: Settings) -> Apps:
    """The Apps extension serving the viewer; pass it as `MCPServer(extensions=[...])`.

    The document is assembled on its first read, not here: create_server stays off the start-up path.
    """
    document: list[str] = []

    async def read() -> str:
        if not document:
            document.append(viewer_html(settings))
        return document[0]

    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=VIEWER_URI,
            name="run-viewer",
            title="Mogplex run viewer",
            description="A live card of one run (status, outcome, timeline), shown by hosts that render MCP Apps.",
            mime_type=APP_MIME_TYPE,
            meta={"ui": _UI_META},
            fn=read,
        )
    )
    return apps


# No network at all (every byte the card needs is inside the document); the clipboard for "Copy run ID".
_UI_META = {
    "csp": ResourceCsp().model_dump(by_alias=True, exclude_none=True),
    "permissions": ResourcePermissions(clipboard_write={}).model_dump(by_alias=True, exclude_none=True),
    "prefersBorder": False,
}


def install(server: MCPServer[Any]) -> None:
    """Show the viewer to clients that negotiated MCP Apps only: bind RUN_TOOLS, list the `ui://` resource."""
    server.middleware.append(_only_for_apps_clients)


async def _only_for_apps_clients(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    result = await call_next(ctx)
    if ctx.method not in ("tools/list", "resources/list") or not isinstance(result, dict):
        return result
    if ctx.method == "tools/list" and client_supports_apps(ctx):
        return {**result, "tools": [_bound(tool) for tool in result.get("tools", [])]}
    if ctx.method == "resources/list" and not client_supports_apps(ctx):
        return {**result, "resources": [r for r in result.get("resources", []) if r.get("uri") != VIEWER_URI]}
    return result


def _bound(tool: dict[str, Any]) -> dict[str, Any]:
    """A tools/list entry (wire form) with `_meta.ui.resourceUri` when its result is one run."""
    if tool.get("name") not in RUN_TOOLS:
        return tool
    return {**tool, "_meta": {**(tool.get("_meta") or {}), "ui": {"resourceUri": VIEWER_URI}}}
