"""How a tool is defined here: one decorator that registers it (docstring as description), shared annotations.

Every tool module (`run_tools.py`, `event_tools.py`, `orchestration.py`) defines its tools with `tool(...)`,
so descriptions, annotations and the runId argument read the same everywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

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
