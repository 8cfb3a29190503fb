"""Tool arguments against their input schemas: unknown names refused (with the closest valid field), lean schemas."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from mogplex_mcp.runs.sanitize import clean_text

# Names a model is likely to guess, and what it meant. Checked before the spelling-based match.
_MEANT = {
    "branch": "workingBranch (with createBranch: true)",
    "branchname": "workingBranch (with createBranch: true)",
    "newbranch": "workingBranch (with createBranch: true)",
    "targetbranch": "baseBranch",
    "frombranch": "baseBranch",
    "base": "baseBranch",
    "repo": "repoId",
    "repository": "repoId",
    "repositoryid": "repoId",
    "reponame": "repoId (the id from list_repos, not the name)",
    "task": "prompt",
    "instructions": "prompt",
    "message": "prompt",
    "agent": "harness",
    "model": "harness",
    "id": "runId",
    "run": "runId",
    "timeout": "timeoutSeconds",
    "cursor": "afterEventId",
    "after": "afterEventId",
    "since": "afterEventId",
    "directory": "rootDirectory",
    "path": "rootDirectory",
    "subdirectory": "rootDirectory",
    "search": "query",
    "name": "query",
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def closest_field(name: str, valid: Iterable[str]) -> str | None:
    """The valid field a model most likely meant by `name`, or None when nothing is close."""
    fields = list(valid)
    by_squashed = {_squash(field): field for field in fields}
    squashed = _squash(name)
    if squashed in by_squashed:  # repo_id, RepoID, run-id …
        return by_squashed[squashed]
    meant = _MEANT.get(squashed)
    if meant is not None and meant.split(" ")[0] in fields:
        return meant
    close = difflib.get_close_matches(squashed, list(by_squashed), n=1, cutoff=0.6)
    return by_squashed[close[0]] if close else None


def unknown_arguments_error(tool: str, arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> ToolError | None:
    """The error for arguments `tool`'s input schema does not declare, or None when all are known."""
    valid = list(schema.get("properties", {}))
    unknown = [name for name in arguments if name not in valid]
    if not unknown:
        return None
    problems = []
    for name in unknown[:5]:
        shown = clean_text(str(name))[:60]
        hint = closest_field(str(name), valid)
        problems.append(f"unknown argument {shown!r}" + (f": use {hint}" if hint else ""))
    more = f"; and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return ToolError(
        f"Invalid arguments for {tool}: {'; '.join(problems)}{more}. Valid arguments: {', '.join(valid)}. "
        "Nothing was sent to Mogplex."
    )


def lean_schema(schema: dict[str, Any], *, closed: bool) -> dict[str, Any]:
    """`schema` without pydantic's generated titles ("Repoid"); `closed` adds additionalProperties: false."""
    cleaned: dict[str, Any] = _without_titles(schema)
    if closed:
        cleaned["additionalProperties"] = False
    return cleaned


def _without_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (_without_titles(value) if key != "properties" else _properties(value))
            for key, value in node.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_without_titles(item) for item in node]
    return node


def _properties(properties: Any) -> Any:
    """Under `properties` the keys are field names (a field may be called "title"): keep every key."""
    if not isinstance(properties, dict):
        return properties
    return {name: _without_titles(value) for name, value in properties.items()}
