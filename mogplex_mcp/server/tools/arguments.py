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
        f"invalid arguments: {'; '.join(problems)}{more}. Valid arguments: {', '.join(valid)}. "
        "Nothing was sent to Mogplex."
    )


def lean_schema(schema: dict[str, Any], *, closed: bool) -> dict[str, Any]:
    """`schema` as a model reads it best: no generated titles ("Repoid"), optional fields as one type.

    `closed` (input schemas) adds additionalProperties: false and drops the `null` branch of optional
    arguments (leaving one out is how to say "unset"); output schemas keep `null` as `type: [T, "null"]`.
    """
    cleaned: dict[str, Any] = _lean(schema, keep_null=not closed)
    if closed:
        cleaned["additionalProperties"] = False
    return cleaned


def _lean(node: Any, *, keep_null: bool) -> Any:
    if isinstance(node, list):
        return [_lean(item, keep_null=keep_null) for item in node]
    if not isinstance(node, dict):
        return node
    node = _one_type(node, keep_null=keep_null)
    lean: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "default" and value is None:
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):  # keys are names (a field may be "title")
            lean[key] = {name: _lean(sub, keep_null=keep_null) for name, sub in value.items()}
        else:
            lean[key] = _lean(value, keep_null=keep_null)
    return lean


def _one_type(node: dict[str, Any], *, keep_null: bool) -> dict[str, Any]:
    """`anyOf: [{type: T, …}, {type: null}]` → `{type: T, …}` (input) or `{type: [T, "null"], …}` (output)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    other = next(branch for branch in branches if branch != {"type": "null"})
    if not isinstance(other, dict) or not isinstance(other.get("type"), str):
        return node
    merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **other}
    if keep_null:
        merged["type"] = [other["type"], "null"]
        if isinstance(other.get("enum"), list):
            merged["enum"] = [*other["enum"], None]
    return merged
