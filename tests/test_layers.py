"""The house's one-way layering, pinned: `cli` → `server` → `runs` → `api`, `config` a leaf, backends apart.

A newcomer finds a room by its name only while each room keeps to what it may import (see docs/architecture.md):
the upstream client knows nothing of MCP, run supervision knows nothing of the MCP surface, the two store
backends never lean on each other, and the server's folders (tools, resources, transport) never reach
sideways into each other. Every import counts, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mogplex_mcp

PACKAGE = Path(mogplex_mcp.__file__).parent


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _violations(folder: str, forbidden: tuple[str, ...], *, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for module in sorted((PACKAGE / folder).rglob("*.py")):
        relative = module.relative_to(PACKAGE).as_posix()
        if relative in skip:
            continue
        for name in sorted(_imports(module)):
            if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden):
                found.append(f"{relative} imports {name}")
    return found


RULES = {
    "api: the upstream client knows nothing of MCP or of what is built on it": (
        "api",
        ("mcp", "starlette", "mogplex_mcp.runs", "mogplex_mcp.server", "mogplex_mcp.cli", "mogplex_mcp.emulator"),
    ),
    "runs: run supervision knows nothing of the MCP surface": (
        "runs",
        ("mcp", "starlette", "mogplex_mcp.server", "mogplex_mcp.cli", "mogplex_mcp.emulator"),
    ),
    "telemetry: a leaf every layer may report through": (
        "telemetry",
        ("mcp", "mogplex_mcp.api", "mogplex_mcp.runs", "mogplex_mcp.server", "mogplex_mcp.cli", "mogplex_mcp.emulator"),
    ),
    "runs/local: the embedded backend never uses the Redis one": ("runs/local", ("mogplex_mcp.runs.redis",)),
    "runs/redis: the Redis backend never uses the embedded one": ("runs/redis", ("mogplex_mcp.runs.local",)),
    "server/tools: never reaches into resources or transport": (
        "server/tools",
        ("mogplex_mcp.server.resources", "mogplex_mcp.server.transport"),
    ),
    "server/resources: never reaches into tools or transport": (
        "server/resources",
        ("mogplex_mcp.server.tools", "mogplex_mcp.server.transport"),
    ),
    "server/transport: never reaches into tools or resources": (
        "server/transport",
        ("mogplex_mcp.server.tools", "mogplex_mcp.server.resources"),
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_imports_go_one_way(rule: str) -> None:
    folder, forbidden = RULES[rule]
    assert _violations(folder, forbidden) == [], rule


def test_the_server_top_level_is_shared_and_only_app_composes_the_folders() -> None:
    top = [module for module in (PACKAGE / "server").glob("*.py") if module.name not in ("app.py", "__init__.py")]
    folders = ("mogplex_mcp.server.tools", "mogplex_mcp.server.resources", "mogplex_mcp.server.transport")
    found = [
        f"server/{module.name} imports {name}"
        for module in sorted(top)
        for name in sorted(_imports(module))
        if any(name == prefix or name.startswith(prefix + ".") for prefix in folders)
    ]
    assert found == [], "shared server modules serve tools and resources alike; only app.py wires the folders"


def test_config_is_a_leaf() -> None:
    ours = sorted(name for name in _imports(PACKAGE / "config.py") if name.startswith("mogplex_mcp"))
    assert ours == []
