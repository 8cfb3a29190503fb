"""The README: the two commands first, generated tables current, every setting documented, snippets valid."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from mogplex_mcp.cli import configure_serve
from mogplex_mcp.config import DEFAULT_BASE_URL
from mogplex_mcp.docs import README, expected_files
from mogplex_mcp.doctor import host_configs

ROOT = Path(__file__).resolve().parent.parent
TEXT = README.read_text(encoding="utf-8")


def code_blocks(language: str, text: str = TEXT) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_the_top_shows_the_prerequisite_and_the_two_commands() -> None:
    top = "\n".join(TEXT.splitlines()[:30])
    assert "uv run pytest" in top
    assert "uv run mogplex-mcp demo" in top
    assert "https://astral.sh/uv/install.sh" in top  # how to get the one prerequisite


def test_the_ci_script_runs_the_readmes_test_command() -> None:
    assert "uv run --frozen pytest" in (ROOT / ".ci" / "run").read_text()


def test_generated_tables_are_current() -> None:
    assert expected_files()[README] == TEXT, "README tables are stale: run `uv run python -m mogplex_mcp.docs`"


def test_every_environment_variable_is_documented() -> None:
    sources = [ROOT / "mogplex_mcp" / name for name in ("config.py", "cli.py")]
    names = {name for path in sources for name in re.findall(r"\bMOGPLEX_[A-Z_]+\b", path.read_text())}
    assert names, "expected to find the variables the settings read"
    for name in sorted(names):
        assert f"| `{name}` |" in TEXT, f"{name} is missing from the configuration table"


def test_every_serve_flag_is_documented() -> None:
    serve = argparse.ArgumentParser(add_help=False)
    configure_serve(serve)
    flags = {opt for action in serve._actions for opt in action.option_strings}
    for flag in sorted(flags):
        assert f"`{flag}" in TEXT, f"{flag} is missing from the flags table"


def test_json_and_toml_snippets_parse() -> None:
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for block in code_blocks("json", text):
            json.loads(block)
        for block in code_blocks("toml", text):
            tomllib.loads(block)


def test_the_install_guides_exist_for_every_host() -> None:
    for page in ("claude-desktop", "vscode", "cursor", "claude-code", "codex"):
        assert (ROOT / "docs" / "install" / f"{page}.md").is_file()
    assert (ROOT / "docs" / "http.md").is_file()


def test_host_snippets_agree_with_what_doctor_prints() -> None:
    generated = {host.split(" (")[0]: snippet for host, snippet in host_configs(DEFAULT_BASE_URL, "uvx").items()}
    documented: list[Any] = [json.loads(block) for block in code_blocks("json")]

    def same_server(doc: dict[str, Any], gen: dict[str, Any]) -> bool:
        return bool(doc | {"command": "uvx"} == gen)

    desktop = json.loads(generated["Claude Desktop"])["mcpServers"]["mogplex"]
    assert any(same_server(d.get("mcpServers", {}).get("mogplex", {}), desktop) for d in documented)
    vscode = json.loads(generated["VS Code"])
    assert vscode in documented
    assert generated["Claude Code"] in TEXT
    codex = tomllib.loads(generated["Codex"])
    assert codex in [tomllib.loads(block) for block in code_blocks("toml")]
