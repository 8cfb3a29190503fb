"""Per-grant scope: what an OAuth client may do, enforced on every MCP message.

Two scopes: `runs:read` (look at runs, their events and results) and `runs:write` (also start, continue and
cancel runs). A grant without `runs:write` sees the read-only tool set, exactly as `--read-only` shows it, and a
call to a write tool gets a clear error naming the missing scope. PAT bearers carry no scopes: the PAT's
own permissions at Mogplex apply, as before. The gateway puts the caller's scopes on the request
(`scope["user"]`, an `AuthenticatedUser`); nothing a client sends can set them.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, ListToolsResult, TextContent

from mogplex_mcp.server.app import WRITE_TOOLS

READ = "runs:read"
WRITE = "runs:write"
ALL_SCOPES = (READ, WRITE)


def out_of_scope_message(tool: str) -> str:
    return (
        f"{tool} is not allowed for this connection: it was authorised read-only (OAuth scope `{READ}`), and "
        f"{tool} needs `{WRITE}`. To start, continue or cancel runs, remove this connector in your assistant and "
        "connect again, choosing 'Start and cancel runs' on the sign-in page. Nothing was sent to Mogplex."
    )


def read_only_caller(request: Any) -> bool:
    """True when the request was authorised by an OAuth grant without `runs:write`."""
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if not isinstance(user, AuthenticatedUser):
        return False
    scopes = user.access_token.scopes
    return bool(scopes) and WRITE not in scopes


class GrantScopes:
    """MCP middleware: hides write tools from read-only grants and refuses their calls."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/list", "tools/call") or not read_only_caller(ctx.request):
            return await call_next(ctx)
        if ctx.method == "tools/call":
            name = (ctx.params or {}).get("name")
            if isinstance(name, str) and name in WRITE_TOOLS:
                return CallToolResult(
                    content=[TextContent(type="text", text=out_of_scope_message(name))], is_error=True
                )
            return await call_next(ctx)
        result = await call_next(ctx)
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [t for t in result.tools if t.name not in WRITE_TOOLS]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return {**result, "tools": [t for t in result["tools"] if _tool_name(t) not in WRITE_TOOLS]}
        return result


def _tool_name(tool: Any) -> Any:
    return tool.get("name") if isinstance(tool, dict) else getattr(tool, "name", None)
