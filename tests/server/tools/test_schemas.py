"""Tool schemas are snapshot-tested: any change to what models see is a reviewed diff.

Run `UPDATE_SNAPSHOTS=1 uv run pytest tests/server/tools/test_schemas.py` to rewrite the snapshot after an
intended change, and review the diff of `tests/server/tools/snapshots/tools.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client

from mogplex_mcp.config import Settings
from mogplex_mcp.server.app import create_server

pytestmark = pytest.mark.anyio

Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"
EXPECTED_TOOLS = [
    "list_repos", "start_run", "get_run", "cancel_run", "list_run_events", "wait_for_run",
    "list_runs", "wait_for_runs", "continue_run",
]  # fmt: skip
WRITERS = {"start_run", "cancel_run", "continue_run"}
# What every model pays for on every turn: all tools' names, descriptions and input schemas together.
DEFINITIONS_BUDGET = 8_000


async def _tools(mode: Mode, tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    server = create_server(Settings(token=None, state_dir=tmp_path, **settings))
    async with Client(server, mode=mode) as client:
        listed = await client.list_tools()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]


@pytest.mark.parametrize("mode", MODES)
async def test_tool_schemas_match_the_snapshot(tmp_path: Path, mode: Mode) -> None:
    current = {tool["name"]: tool for tool in await _tools(mode, tmp_path)}
    if os.environ.get("UPDATE_SNAPSHOTS") and mode == "legacy":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "tool schemas changed: rerun with UPDATE_SNAPSHOTS=1 and review the diff"


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_declares_all_four_hints_and_a_self_sufficient_output(tmp_path: Path, mode: Mode) -> None:
    tools = await _tools(mode, tmp_path)
    assert sorted(t["name"] for t in tools) == sorted(EXPECTED_TOOLS)
    for tool in tools:
        hints = tool["annotations"]
        for hint in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"):
            assert isinstance(hints.get(hint), bool), (tool["name"], hint)
        assert hints["readOnlyHint"] is (tool["name"] not in WRITERS)
        output = tool["outputSchema"]["properties"]
        assert {"summary", "nextSteps"} <= set(output), tool["name"]
        assert tool["description"].strip()
    by_name = {t["name"]: t for t in tools}
    assert by_name["cancel_run"]["annotations"]["destructiveHint"] is True
    start = by_name["start_run"]["inputSchema"]["properties"]
    assert start["prompt"]["maxLength"] == 100_000
    assert set(start) >= {
        "repoId", "prompt", "harness", "baseBranch", "workingBranch", "createBranch", "rootDirectory",
        "conversationId", "workspaceSessionId", "mode", "idempotencyKey",
    }  # fmt: skip
    assert by_name["start_run"]["inputSchema"]["required"] == ["repoId", "prompt"]


MODEL_FACING_MAX = 8_000  # every tool, the orchestration ones to come included


def model_facing_chars(tools: list[dict[str, Any]]) -> int:
    """What a host hands the model per tool: its name, description and input schema (as JSON)."""
    return sum(len(t["name"]) + len(t["description"]) + len(json.dumps(t["inputSchema"])) for t in tools)


def _keys(node: Any, key: str) -> list[Any]:
    """Every value stored under `key` in a JSON schema, except where `key` names a property."""
    if isinstance(node, list):
        return [found for item in node for found in _keys(item, key)]
    if not isinstance(node, dict):
        return []
    found = [node[key]] if key in node and not isinstance(node[key], dict) else []
    return (
        found
        + [hit for name, value in node.items() for hit in _keys(value, key) if name != "properties"]
        + [hit for value in (node.get("properties") or {}).values() for hit in _keys(value, key)]
    )


@pytest.mark.parametrize("mode", MODES)
async def test_definitions_stay_lean_closed_and_typed(tmp_path: Path, mode: Mode) -> None:
    tools = await _tools(mode, tmp_path)
    assert model_facing_chars(tools) <= MODEL_FACING_MAX, "tool definitions outgrew what a host should hand a model"
    for tool in tools:
        assert tool["inputSchema"]["additionalProperties"] is False, tool["name"]
        for schema in (tool["inputSchema"], tool["outputSchema"]):
            assert _keys(schema, "title") == [], f"{tool['name']}: generated titles in its schema"
    by_name = {t["name"]: t for t in tools}
    run_view = by_name["get_run"]["outputSchema"]["$defs"]["RunView"]["properties"]
    assert set(run_view["status"]["enum"]) >= {"pending", "streaming", "success", "failed", "cancelled"}
    assert by_name["start_run"]["inputSchema"]["properties"]["harness"]["enum"] == ["codex", "claude-code"]
    start = by_name["start_run"]
    assert "createBranch: true" in start["description"]
    for field in ("conversationId", "workspaceSessionId", "mode"):
        assert len(start["inputSchema"]["properties"][field]["description"]) > 30, field


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_mode_hides_the_writers(tmp_path: Path, mode: Mode) -> None:
    names = {tool["name"] for tool in await _tools(mode, tmp_path, read_only=True)}
    assert names == set(EXPECTED_TOOLS) - WRITERS


async def test_the_tool_definitions_stay_lean(tmp_path: Path) -> None:
    tools = await _tools("legacy", tmp_path)
    size = sum(len(t["name"]) + len(t["description"]) + len(json.dumps(t["inputSchema"])) for t in tools)
    assert size <= DEFINITIONS_BUDGET, f"tool definitions take {size:,} chars; keep them under {DEFINITIONS_BUDGET:,}"
