"""The Claude Desktop bundle manifest: its tools equal the registered tools, and its config reaches Settings."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mogplex_mcp import __version__
from mogplex_mcp.config import DEFAULT_BASE_URL, Settings
from mogplex_mcp.docs import MANIFEST, expected_files
from mogplex_mcp.server.app import create_server, tool_names

ROOT = Path(__file__).resolve().parent.parent


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.anyio
async def test_manifest_tools_are_the_registered_tools() -> None:
    registered = await tool_names(create_server(Settings(token=None)))
    assert [tool["name"] for tool in manifest()["tools"]] == registered


def test_manifest_tool_descriptions_are_current() -> None:
    assert expected_files()[MANIFEST] == MANIFEST.read_text(encoding="utf-8"), (
        "manifest.json tools are stale: run `uv run python -m mogplex_mcp.docs`"
    )


def test_manifest_versions_match_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert manifest()["version"] == __version__ == pyproject["project"]["version"]
    assert manifest()["manifest_version"] == "0.4"


def test_server_runs_the_locked_project_with_desktops_uv() -> None:
    server = manifest()["server"]
    assert server["type"] == "uv"
    assert (ROOT / server["entry_point"]).is_file()
    config = server["mcp_config"]
    assert config["command"] == "uv"
    assert config["args"][:4] == ["run", "--directory", "${__dirname}", "--frozen"]
    assert config["args"][-2:] == ["mogplex-mcp", "serve"]
    assert config["env"]["MOGPLEX_TOKEN"] == "${user_config.token}"


def test_user_config_token_is_a_required_secret_and_the_rest_have_defaults() -> None:
    user_config = manifest()["user_config"]
    assert user_config["token"]["sensitive"] is True
    assert user_config["token"]["required"] is True
    for name, entry in user_config.items():
        if not entry.get("required"):
            assert "default" in entry, f"{name} needs a default (an empty optional value arrives as a literal)"
    assert user_config["base_url"]["default"] == DEFAULT_BASE_URL


def desktop_values() -> dict[str, str]:
    """What Desktop substitutes for each `${user_config.x}`: the user's token, every other entry's default."""
    values = {"${user_config.token}": "mog_abc123"}
    for name, entry in manifest()["user_config"].items():
        if "default" in entry:
            default = entry["default"]
            values[f"${{user_config.{name}}}"] = str(default).lower() if isinstance(default, bool) else str(default)
    return values


def test_what_desktop_passes_becomes_the_settings_we_expect() -> None:
    env: dict[str, str] = manifest()["server"]["mcp_config"]["env"]
    filled = {name: desktop_values().get(value, value) for name, value in env.items()}
    settings = Settings.from_env(filled)
    assert settings.token == "mog_abc123"
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.read_only is False
    # Desktop passes an unfilled optional entry through as literal text: it must count as unset.
    literal = Settings.from_env(env | {"MOGPLEX_TOKEN": "mog_abc123"})
    assert literal.base_url == DEFAULT_BASE_URL
    assert literal.read_only is False


def test_runtime_range_and_privacy_policy() -> None:
    data = manifest()
    assert data["compatibility"]["runtimes"]["python"] == ">=3.11 <3.15"
    assert data["privacy_policies"]


def test_bundle_ships_what_uv_needs_and_nothing_else() -> None:
    ignored = {line.strip() for line in (ROOT / ".mcpbignore").read_text().splitlines()}
    for needed in ("pyproject.toml", "uv.lock", ".python-version", "README.md", "mogplex_mcp/"):
        assert needed not in ignored
        assert (ROOT / needed).exists()
    for unwanted in ("tests/", ".venv/", ".git/", "bench/", "*.mcpb"):
        assert unwanted in ignored
