"""Interop harness: where the pinned Node clients live, and how to run them (skip only when Node is absent)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from tests.interop.servers import REPO_ROOT, SERVE, server_env

INTEROP = Path(__file__).resolve().parent
NODE_MODULES = INTEROP / "node_modules"
NODE = shutil.which("node")
NPX = shutil.which("npx")
CLIENT_LIMIT = 120.0

# Observed flavour: the event stream pushes events, so progress flows steadily; fast, and no rate limits.
INTEROP_UPSTREAM = EmulatorConfig(flavor="observed", speed=30.0, rate_limit_per_minute=0, start_limits=(0, 0, 0))

# Installs the pinned clients once per session (tests/interop/conftest.py); skips only when Node is absent.
requires_node = pytest.mark.usefixtures("node_clients")
PACKAGES = ("@modelcontextprotocol/inspector", "@modelcontextprotocol/sdk")


def clients_installed() -> bool:
    return all((NODE_MODULES / package / "package.json").exists() for package in PACKAGES)


def require_clients() -> None:
    """The `node_clients` fixture has run: anything still missing is a setup error, not a reason to skip."""
    for package in PACKAGES:
        if not (NODE_MODULES / package / "package.json").exists():
            pytest.fail(f"{package} is not installed in tests/interop: run `bash .ci/install-interop`")


@dataclass
class Upstream:
    """The emulator plus where the server under test keeps its state, and the env a host would pass."""

    emulator: EmulatorHandle
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return server_env(self.emulator.base_url, self.emulator.token, self.home, log_level="warning")


@asynccontextmanager
async def upstream(tmp_path: Path, *, node: bool = True) -> AsyncIterator[Upstream]:
    if node:
        require_clients()
    async with running_emulator(INTEROP_UPSTREAM) as emu:
        yield Upstream(emu, tmp_path)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_node(command: list[str], home: Path) -> Finished:
    """Run a Node client with HOME in a temp dir (the Inspector writes ~/.mcp-inspector) and no npm chatter."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home / "node-home"),
        "npm_config_update_notifier": "false",
        "NO_COLOR": "1",
    }
    (home / "node-home").mkdir(exist_ok=True)
    with anyio.fail_after(CLIENT_LIMIT):
        done = await anyio.run_process(command, cwd=INTEROP, env=env, check=False)
    return Finished(done.returncode, done.stdout.decode(), done.stderr.decode())


def stdio_command(env: dict[str, str]) -> dict[str, Any]:
    """How a host launches the server: command, args, explicit env, working directory."""
    return {"command": SERVE[0], "args": SERVE[1:], "env": env, "cwd": str(REPO_ROOT)}


PYTHON = sys.executable
