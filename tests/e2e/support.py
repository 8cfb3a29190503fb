"""End-to-end helpers: the real server as a subprocess (stdio) or under uvicorn (HTTP), against the emulator."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorConfig
from mogplex_mcp.emulator.config import default_tokens

Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"  # acme/api, seeded by the emulator
# A second user of the same emulator (the seeded tokens all belong to the demo user).
USER_B_TOKEN = "mog_SecondUser4Gateway8Tz3Qw"
UNKNOWN_TOKEN = "mog_NotKnownAnywhere0000000"
WRITERS = {"start_run", "cancel_run", "continue_run"}


def emulator_config(**overrides: Any) -> EmulatorConfig:
    tokens = {**default_tokens(), USER_B_TOKEN: frozenset({"read", "write"})}
    values: dict[str, Any] = {"speed": 50.0, "tokens": tokens}
    values.update(overrides)
    return EmulatorConfig(**values)


def server_env(base_url: str, state_dir: Path, token: str | None = DEMO_TOKEN, **extra: str) -> dict[str, str]:
    """The whole environment a host would pass: nothing is inherited from the test process."""
    env = {
        "MOGPLEX_BASE_URL": base_url,
        "MOGPLEX_MCP_STATE_DIR": str(state_dir),
        "MOGPLEX_RETRY_BUDGET_SECONDS": "3",
        "MOGPLEX_READ_TIMEOUT_SECONDS": "5",
    }
    if token is not None:
        env["MOGPLEX_TOKEN"] = token
    env.update(extra)
    return env


def stdio_params(env: Mapping[str, str], *args: str) -> StdioServerParameters:
    """`python -m mogplex_mcp serve ...`, as a host launches it (the SDK adds only HOME, PATH and the like)."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "mogplex_mcp", "serve", *args], env=dict(env), cwd=str(Path.cwd())
    )


@asynccontextmanager
async def http_client(url: str, mode: Mode, token: str | None, **headers: str) -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP that sends `token` as its own bearer (or none)."""
    all_headers = dict(headers)
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with (
        httpx2.AsyncClient(headers=all_headers, timeout=httpx2.Timeout(30.0, read=90.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    data: dict[str, Any] = result.structured_content
    return data


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected {tool} to fail, got {result.structured_content}"
    return text_of(result)


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def run_to_end(client: Client, run_id: str) -> dict[str, Any]:
    """wait_for_run until terminal (the emulator runs at 50x, so a run takes well under a second)."""
    for _ in range(20):
        waited = await ok(client, "wait_for_run", runId=run_id, timeoutSeconds=5)
        if waited["finished"]:
            return waited
    raise AssertionError(f"run {run_id} did not finish")


async def initialize_error(url: str, mode: Mode, token: str | None) -> str:
    """The message a real client gets when the server refuses to let it connect (from inside task groups)."""
    try:
        async with http_client(url, mode, token) as client:
            await client.list_tools()
    except Exception as exc:  # the client wraps the refusal in exception groups
        return "\n".join(_messages(exc))
    raise AssertionError("the server let the client connect")


def _messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [message for inner in exc.exceptions for message in _messages(inner)]
    return [str(exc)]
