"""The official MCP Registry entry (server.json): check it, and stamp it with a packed bundle's sha256.

    python .ci/registry_entry.py check [SERVER_JSON]            # schema + what must agree with the project
    python .ci/registry_entry.py stamp BUNDLE.mcpb [--output P]  # release: the bundle's sha256 into the entry

The schema is the published 2025-12-11 one, vendored in tests/fixtures/registry/ (no network: checks run
offline). What must agree beyond the schema: the PyPI package and its version are pyproject.toml's; the README
(PyPI's long description) carries the `mcp-name:` ownership line; the MCPB release URL names the version and has
a real sha256 (a zero hash is the unreleased placeholder: `check --release` refuses it); the token is a secret
everywhere it is asked for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parent.parent
SERVER_JSON = ROOT / "server.json"
SCHEMA = ROOT / "tests" / "fixtures" / "registry" / "server.schema.2025-12-11.json"
UNRELEASED_SHA256 = "0" * 64


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def schema_problems(entry: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    return [
        f"schema: /{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(entry)
    ]


def project_problems(entry: dict[str, Any], *, release: bool = False) -> list[str]:
    """What the schema cannot know: the entry agrees with pyproject.toml and the README."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    readme = (ROOT / project["readme"]).read_text(encoding="utf-8")
    version, problems = project["version"], []
    schema_id = load(SCHEMA)["$id"]
    if entry.get("$schema") != schema_id:
        problems.append(f"$schema must be {schema_id}")
    if f"mcp-name: {entry.get('name')}" not in readme:
        problems.append(f"README.md lacks the ownership line `mcp-name: {entry.get('name')}`")
    if entry.get("version") != version:
        problems.append(f"version {entry.get('version')} is not pyproject's {version}")
    packages = {package["registryType"]: package for package in entry.get("packages", [])}
    pypi, mcpb = packages.get("pypi", {}), packages.get("mcpb", {})
    if (pypi.get("identifier"), pypi.get("version")) != (project["name"], version):
        problems.append(f"the pypi package must be {project['name']} {version}")
    if f"/v{version}/" not in mcpb.get("identifier", "") or mcpb.get("version") != version:
        problems.append(f"the mcpb package must be the v{version} release asset")
    if release and mcpb.get("fileSha256") == UNRELEASED_SHA256:
        problems.append("the mcpb fileSha256 is the unreleased placeholder: run `stamp` with the released bundle")
    token = [v for v in pypi.get("environmentVariables", []) if v.get("name") == "MOGPLEX_TOKEN"]
    if not token or not token[0].get("isSecret"):
        problems.append("MOGPLEX_TOKEN must be declared a secret")
    for remote in entry.get("remotes", []):
        auth = [h for h in remote.get("headers", []) if h.get("name") == "Authorization"]
        if not auth or not auth[0].get("isSecret") or not re.fullmatch(r"Bearer \{\w+\}", auth[0].get("value", "")):
            problems.append(f"remote {remote.get('url')}: Authorization must be a secret `Bearer {{token}}` header")
    return problems


def stamp(entry: dict[str, Any], bundle: Path) -> dict[str, Any]:
    """The entry with the mcpb package's fileSha256 set to `bundle`'s."""
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    stamped = json.loads(json.dumps(entry))
    for package in stamped.get("packages", []):
        if package.get("registryType") == "mcpb":
            package["fileSha256"] = digest
    return stamped


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check")
    check.add_argument("entry", nargs="?", type=Path, default=SERVER_JSON)
    check.add_argument("--release", action="store_true", help="also refuse the unreleased placeholder hash")
    stamping = commands.add_parser("stamp")
    stamping.add_argument("bundle", type=Path)
    stamping.add_argument("--output", type=Path, default=SERVER_JSON)
    args = parser.parse_args(argv)
    if args.command == "stamp":
        stamped = stamp(load(SERVER_JSON), args.bundle)
        args.output.write_text(json.dumps(stamped, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{args.output}: mcpb fileSha256 {stamped['packages'][-1]['fileSha256']}")
        return 0
    entry = load(args.entry)
    problems = schema_problems(entry, load(SCHEMA)) + project_problems(entry, release=args.release)
    for problem in problems:
        print(f"{args.entry}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.entry}: a valid MCP Registry entry ({entry['name']} {entry['version']})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
