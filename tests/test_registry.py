"""The official MCP Registry entry (server.json), checked offline against the published 2025-12-11 schema.

The schema is vendored byte for byte (tests/fixtures/registry/, pinned by sha256 below) from the registry's own
copy (modelcontextprotocol/registry, internal/validators/schemas/2025-12-11.json): moving to a newer schema is a
deliberate change of file and pin together. `.ci/registry_entry.py` holds the checks the release uses too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_SHA256 = "d4c163f299ece68b7432f4e44c4108f2fdb663d99dc088c8344142e5b0a4b520"


def _registry_entry() -> ModuleType:
    spec = importlib.util.spec_from_file_location("registry_entry", ROOT / ".ci" / "registry_entry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRY = _registry_entry()


def entry() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    return data


def problems(data: dict[str, Any], *, release: bool = False) -> list[str]:
    found: list[str] = ENTRY.schema_problems(data, ENTRY.load(ENTRY.SCHEMA))
    found += ENTRY.project_problems(data, release=release)
    return found


def test_the_vendored_schema_is_the_published_one() -> None:
    raw = ENTRY.SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256
    assert json.loads(raw)["$id"] == "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


def test_server_json_is_a_valid_registry_entry() -> None:
    assert problems(entry()) == []


def test_it_offers_the_pypi_package_the_bundle_and_the_remote_gateway() -> None:
    data = entry()
    kinds = [package["registryType"] for package in data["packages"]]
    assert kinds == ["pypi", "mcpb"]
    assert data["packages"][0]["runtimeHint"] == "uvx"  # what `uvx mogplex-mcp` users run
    remote = data["remotes"][0]
    assert remote["type"] == "streamable-http" and remote["url"].endswith("/mcp")
    assert remote["headers"][0]["name"] == "Authorization" and remote["headers"][0]["isSecret"] is True
    # With the OAuth front door (docs/oauth.md) a host connects by URL and signs in: the PAT header is optional.
    assert remote["headers"][0]["isRequired"] is False and "OAuth" in remote["headers"][0]["description"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"mcp-name: {data['name']}" in readme, "PyPI shows the README: the registry checks ownership there"


def _mutated(path: list[str | int], value: Any) -> dict[str, Any]:
    data = entry()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (["description"], "x" * 101, "is too long"),
        (["name"], "mogplex-mcp", "does not match"),
        (["packages", 1, "fileSha256"], "not-a-hash", "does not match"),
        (["packages", 0, "version"], "latest", "should not be valid"),
        (["remotes", 0, "url"], "ftp://mcp.example.com/mcp", "is not valid under any of the given schemas"),
        (["remotes", 0, "headers", 0, "isSecret"], False, "Authorization must be a secret"),
        (["packages", 0, "environmentVariables", 0, "isSecret"], False, "MOGPLEX_TOKEN must be declared a secret"),
        (["packages", 0, "version"], "0.0.9", "the pypi package must be"),
        (["name"], "io.github.someone-else/mogplex-mcp", "README.md lacks the ownership line"),
    ],
)
def test_the_check_refuses_what_the_registry_would(path: list[str | int], value: Any, complaint: str) -> None:
    found = problems(_mutated(path, value))
    assert any(complaint in problem for problem in found), found


def test_a_release_stamps_the_bundles_sha256(tmp_path: Path) -> None:
    assert any("unreleased placeholder" in problem for problem in problems(entry(), release=True))
    bundle = tmp_path / "mogplex-mcp-0.1.0.mcpb"
    bundle.write_bytes(b"PK\x03\x04 a bundle's bytes")
    stamped = ENTRY.stamp(entry(), bundle)
    assert stamped["packages"][1]["fileSha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert problems(stamped, release=True) == []
