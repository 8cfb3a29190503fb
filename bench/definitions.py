"""Tool definitions' size: what a host hands the model per tool, and the whole wire `tools/list`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mcp import Client

from bench.report import Section
from mogplex_mcp.config import Settings
from mogplex_mcp.server.app import create_server

MODEL_FACING_TARGET = 8_000  # every tool, the orchestration tools to come included
CHARS_PER_TOKEN = 4  # a rough rule for English and JSON; the exact count depends on the model's tokenizer


def model_facing_chars(tools: list[dict[str, Any]]) -> int:
    """Name + description + input schema (JSON) per tool: what hosts put in the model's context."""
    return sum(len(t["name"]) + len(t["description"]) + len(json.dumps(t["inputSchema"])) for t in tools)


async def listed_tools() -> tuple[list[dict[str, Any]], str]:
    """The tools as a handshake-era client lists them, and the `tools/list` result as compact JSON."""
    with tempfile.TemporaryDirectory() as state_dir:
        server = create_server(Settings(token=None, state_dir=Path(state_dir)))
        async with Client(server, mode="legacy") as client:
            listed = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    wire = listed.model_dump_json(by_alias=True, exclude_none=True)
    return tools, wire


async def run() -> Section:
    tools, wire = await listed_tools()
    facing = model_facing_chars(tools)
    section = Section(
        "definitions",
        "Tool definitions",
        "The server built in-process and listed by a handshake-era `mcp.Client`. Model-facing: per tool, "
        "its name, description and input schema as JSON (`json.dumps`, default separators) — what a host puts "
        "in the model's context. Wire: the whole `tools/list` result as compact JSON, output schemas "
        f"included. Tokens are estimated at {CHARS_PER_TOKEN} characters each.",
    )
    per_tool = ", ".join(
        f"{t['name']} {len(t['name']) + len(t['description']) + len(json.dumps(t['inputSchema']))}" for t in tools
    )
    section.add(
        f"model-facing definitions, {len(tools)} tools (≈ tokens)",
        f"{facing:,} chars (≈ {facing // CHARS_PER_TOKEN:,})",
        f"≤ {MODEL_FACING_TARGET:,} chars",
        facing <= MODEL_FACING_TARGET,
    )
    section.add("model-facing, per tool (chars)", per_tool)
    section.add("wire `tools/list` (input + output schemas)", f"{len(wire):,} chars")
    section.notes.append(
        "The target leaves room for the orchestration tools to come (list_runs, wait_for_runs, continue_run) "
        "within 8,000 characters for all tools. Kept lean by `server/tools/arguments.py`: no generated titles, one "
        "type per optional field, closed input schemas; pinned by `tests/server/tools/test_schemas.py`. Before "
        "that (issue 12): 5,072 model-facing and 18,603 wire characters for the same six tools, with fewer "
        "arguments and result fields."
    )
    return section
