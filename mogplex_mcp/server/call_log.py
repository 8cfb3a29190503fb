"""Per tool call: one structured log line at INFO and the tool-call metrics — a context-tier MCP middleware.

It runs inside the SDK's OpenTelemetry middleware, so the line carries the call's trace id when tracing is
on. The line holds the tool's name, the outcome, the duration, the run id (only ever a UUID read from the
arguments or the result) and a request id: never a token, a prompt, an argument value or a message.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from pydantic import ValidationError

from mogplex_mcp.telemetry import hooks, tracing

calls_logger = logging.getLogger("mogplex_mcp.calls")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A client's own JSON-RPC id is logged only when it is short and plain (ids are the client's free text).
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ToolCallObserver:
    """Times every `tools/call`, reports it to the metrics hooks and logs it; other messages pass through."""

    def __init__(self, is_tool: Callable[[str], bool]) -> None:
        self._is_tool = is_tool  # unknown names become "unknown": a caller cannot grow the label set

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params = ctx.params or {}
        name = params.get("name")
        tool = name if isinstance(name, str) and self._is_tool(name) else "unknown"
        started = time.perf_counter()
        outcome = "crashed"
        result: HandlerResult = None
        try:
            result = await call_next(ctx)
            outcome = _outcome(result, name)
            return result
        except (MCPError, ValidationError):
            outcome = "rejected"  # a JSON-RPC error: unknown tool, malformed params
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - started
            hooks.recorder().tool_call(tool, outcome, seconds)
            _log_call(tool, outcome, seconds, _run_id(params.get("arguments"), result), ctx.request_id)


def _log_call(tool: str, outcome: str, seconds: float, run_id: str | None, jsonrpc_id: object) -> None:
    if not calls_logger.isEnabledFor(logging.INFO):
        return
    trace_id = tracing.trace_id_hex()
    fields: dict[str, str | float] = {
        "event": "tool_call",
        "tool": tool,
        "outcome": outcome,
        "duration_ms": round(seconds * 1000, 1),
        "request_id": trace_id[:16] if trace_id else secrets.token_hex(8),
    }
    if run_id:
        fields["run_id"] = run_id
    if trace_id:
        fields["trace_id"] = trace_id
    if jsonrpc_id is not None and _PLAIN_ID.match(str(jsonrpc_id)):
        fields["jsonrpc_id"] = str(jsonrpc_id)
    text = " ".join(f"{key}={value}" for key, value in fields.items() if key != "event")
    calls_logger.info("tool_call %s", text, extra={"fields": fields})


def _outcome(result: HandlerResult, name: object) -> str:
    """ok, error (the model was told why), or crashed: the SDK's bare text for an exception that is not a
    ToolError (every error of ours is a ToolError whose text starts with the tool's name; server/errors.py)."""
    if isinstance(result, CallToolResult):
        failed, content = bool(result.is_error), [getattr(block, "text", None) for block in result.content]
    elif isinstance(result, Mapping):
        failed = result.get("isError") is True
        content = [block.get("text") for block in result.get("content") or [] if isinstance(block, Mapping)]
    else:
        return "ok"
    if not failed:
        return "ok"
    return "crashed" if content[:1] == [f"Error executing tool {name}"] else "error"


def _run_id(arguments: object, result: HandlerResult) -> str | None:
    """The run the call was about: its `runId` argument, else the `runId` its result names (start_run)."""
    candidates: list[object] = []
    if isinstance(arguments, Mapping):
        candidates.append(arguments.get("runId"))
    structured: object = None
    if isinstance(result, CallToolResult):
        structured = result.structured_content
    elif isinstance(result, Mapping):
        structured = result.get("structuredContent")
    if isinstance(structured, Mapping):
        candidates.append(structured.get("runId"))
        run = structured.get("run")  # start_run and continue_run answer {"run": {"runId": ...}, ...}
        if isinstance(run, Mapping):
            candidates.append(run.get("runId"))
    return next((c for c in candidates if isinstance(c, str) and _UUID.match(c)), None)
