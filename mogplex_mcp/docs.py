"""Reference docs generated from the registered server: the README's tool and resource tables, the bundle's tools.

`python -m mogplex_mcp.docs` rewrites them in place; `--check` fails on drift (tests and CI run the check).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.types import ResourceTemplate, Tool

from mogplex_mcp.config import Settings
from mogplex_mcp.server.app import WRITE_TOOLS, create_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MANIFEST = ROOT / "manifest.json"
BEGIN = "<!-- generated:{name} (python -m mogplex_mcp.docs) -->"
END = "<!-- end:{name} -->"


async def registered() -> tuple[list[Tool], list[ResourceTemplate]]:
    """What a full (not read-only) server registers; no network, no lifespan."""
    server = create_server(Settings(token=None))
    return await server.list_tools(), await server.list_resource_templates()


def _inputs(tool: Tool) -> str:
    schema = tool.input_schema
    required = set(schema.get("required", []))
    names = [f"`{name}`" if name in required else f"`{name}?`" for name in schema.get("properties", {})]
    return ", ".join(names) or "—"


def _kind(tool: Tool) -> str:
    hints = tool.annotations
    if hints is not None and hints.read_only_hint:
        return "read-only"
    if hints is not None and hints.destructive_hint:
        return "destructive" + (" (hidden by --read-only)" if tool.name in WRITE_TOOLS else "")
    return "writes" + (" (hidden by --read-only)" if tool.name in WRITE_TOOLS else "")


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def tool_table(tools: list[Tool]) -> str:
    rows = ["| Tool | What it does | Inputs (`?` = optional) | Kind |", "|---|---|---|---|"]
    rows += [f"| `{t.name}` | {_cell(t.description)} | {_inputs(t)} | {_kind(t)} |" for t in tools]
    return "\n".join(rows)


def resource_table(templates: list[ResourceTemplate]) -> str:
    if not templates:
        return "_This build registers no resources._"
    rows = ["| URI | What it holds | Type |", "|---|---|---|"]
    rows += [
        f"| `{t.uri_template}` | {_cell(t.description or t.title or t.name)} | {t.mime_type or '—'} |"
        for t in templates
    ]
    return "\n".join(rows)


def manifest_tools(tools: list[Tool]) -> list[dict[str, str]]:
    """The bundle's `tools` entries: only name and description (the MCPB schema allows nothing else)."""
    return [{"name": t.name, "description": _cell(t.description)} for t in tools]


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README.md lacks the markers for the {name!r} block: {begin} … {end}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def render_readme(text: str, tools: list[Tool], templates: list[ResourceTemplate]) -> str:
    text = replace_block(text, "tools", tool_table(tools))
    return replace_block(text, "resources", resource_table(templates))


def render_manifest(text: str, tools: list[Tool]) -> str:
    manifest: dict[str, Any] = json.loads(text)
    manifest["tools"] = manifest_tools(tools)
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    """Each generated file as it should read now."""
    tools, templates = anyio.run(registered)
    return {
        README: render_readme(README.read_text(encoding="utf-8"), tools, templates),
        MANIFEST: render_manifest(MANIFEST.read_text(encoding="utf-8"), tools),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mogplex_mcp.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated section is out of date")
    args = parser.parse_args(argv)
    stale = [path for path, text in expected_files().items() if path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path.name} is out of date: run `uv run python -m mogplex_mcp.docs`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected_files().items():
        path.write_text(text, encoding="utf-8")
    print("updated: " + (", ".join(path.name for path in stale) or "nothing (already current)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
