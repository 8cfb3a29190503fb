"""Test harness: the real server, driven by a real MCP client, against the emulator on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp import Client
from mcp.types import CallToolResult

from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.state import AppState

Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")

FAST_FOLLOW = FollowSettings(poll_interval=0.05, max_poll_interval=0.2, linger_seconds=0.5)


@dataclass
class Session:
    """One connected client plus what the test needs to look behind it."""

    client: Client
    emulator: EmulatorHandle
    settings: Settings
    states: list[AppState] = field(default_factory=list)

    @property
    def state(self) -> AppState:
        return self.states[-1]

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return await self.client.call_tool(tool, arguments)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; return its structured result."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        content: dict[str, Any] = result.structured_content
        return content

    async def error(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail; return the message the model sees."""
        result = await self.call(tool, **arguments)
        assert result.is_error, f"expected an error, got {result.structured_content}"
        return text_of(result)

    async def start(self, prompt: str = "Fix the failing test in the auth module.", **extra: Any) -> dict[str, Any]:
        repos = await self.ok("list_repos")
        repo_id = extra.pop("repoId", repos["repos"][0]["id"])
        return await self.ok("start_run", repoId=repo_id, prompt=prompt, **extra)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def settings_for(emulator: EmulatorHandle, state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "token": emulator.token,
        "base_url": emulator.base_url,
        "state_dir": state_dir,
        "retry_budget_seconds": 3.0,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def session(
    tmp_path: Path,
    mode: Mode,
    *,
    emulator: EmulatorHandle | None = None,
    config: EmulatorConfig | None = None,
    follow: FollowSettings = FAST_FOLLOW,
    **overrides: Any,
) -> AsyncIterator[Session]:
    """A connected client (in-memory, `mode` era) on a server pointed at an emulator on loopback."""
    async with _emulator(emulator, config) as emu:
        settings = settings_for(emu, tmp_path / "state", **overrides)
        states: list[AppState] = []
        server = create_server(settings, follow=follow, on_state=states.append)
        async with Client(server, mode=mode) as client:
            yield Session(client=client, emulator=emu, settings=settings, states=states)


@asynccontextmanager
async def _emulator(existing: EmulatorHandle | None, config: EmulatorConfig | None) -> AsyncIterator[EmulatorHandle]:
    if existing is not None:
        yield existing
        return
    async with running_emulator(config or EmulatorConfig(speed=50.0)) as handle:
        yield handle


def load_fixture(name: str) -> Any:
    return json.loads((Path(__file__).parent.parent / "fixtures" / name).read_text())
