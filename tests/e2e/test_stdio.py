"""`mogplex-mcp serve` as a subprocess over stdio, in both protocol eras, against the emulator on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextResourceContents

from mogplex_mcp.emulator import DEMO_TOKEN, running_emulator
from tests.e2e.support import (
    MODES,
    REPO_ID,
    WRITERS,
    Mode,
    emulator_config,
    error,
    ok,
    run_to_end,
    server_env,
    stdio_params,
    tool_names,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_the_whole_workflow_over_stdio(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(emulator_config()) as emu:
        params = stdio_params(server_env(emu.base_url, tmp_path))
        async with Client(params, mode=mode) as client:
            assert await tool_names(client) == {
                "list_repos",
                "start_run",
                "get_run",
                "cancel_run",
                "list_run_events",
                "wait_for_run",
                "list_runs",
                "wait_for_runs",
                "continue_run",
            }
            repos = await ok(client, "list_repos")
            assert "acme/api" in [repo["fullName"] for repo in repos["repos"]]

            started = await ok(client, "start_run", repoId=REPO_ID, prompt="Add a health check endpoint")
            run_id = started["run"]["runId"]
            finished = await run_to_end(client, run_id)
            assert finished["run"]["status"] == "success"
            assert (await ok(client, "get_run", runId=run_id))["run"]["pullRequestUrl"].startswith("https://")
            events = await ok(client, "list_run_events", runId=run_id)
            assert events["events"] and events["terminal"]

            log = await client.read_resource(f"mogplex://runs/{run_id}/log")
            text = "".join(c.text for c in log.contents if isinstance(c, TextResourceContents))
            assert run_id in text

            endless = await ok(client, "start_run", repoId=REPO_ID, prompt="Keep going [scenario:endless]")
            cancelled = await ok(client, "cancel_run", runId=endless["run"]["runId"])
            assert cancelled["outcome"] in ("cancellation_requested", "already_terminal")
            assert (await run_to_end(client, endless["run"]["runId"]))["run"]["status"] == "cancelled"


@pytest.mark.parametrize(("args", "extra_env"), [(("--read-only",), {}), ((), {"MOGPLEX_READ_ONLY": "true"})])
async def test_read_only_hides_the_writers(tmp_path: Path, args: tuple[str, ...], extra_env: dict[str, str]) -> None:
    async with running_emulator(emulator_config()) as emu:
        params = stdio_params(server_env(emu.base_url, tmp_path, **extra_env), *args)
        async with Client(params, mode="legacy") as client:
            names = await tool_names(client)
            assert not names & WRITERS
            assert {"list_repos", "list_runs", "wait_for_runs"} <= names
            assert (await ok(client, "list_repos"))["count"] >= 1
            with pytest.raises(MCPError) as hidden:  # a protocol error (-32602), not a tool's answer
                await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": "x"})
            assert hidden.value.error.code == -32602 and "read-only" in hidden.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_without_a_token_tools_say_how_to_configure_one(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(emulator_config()) as emu:
        params = stdio_params(server_env(emu.base_url, tmp_path, token=None))
        async with Client(params, mode=mode) as client:
            message = await error(client, "list_repos")
            assert "MOGPLEX_TOKEN" in message
            assert emu.emulator.request_count() == 0


async def test_an_unfilled_desktop_placeholder_counts_as_unset(tmp_path: Path) -> None:
    async with running_emulator(emulator_config()) as emu:
        env = server_env(emu.base_url, tmp_path, MOGPLEX_READ_ONLY="${user_config.read_only}")
        async with Client(stdio_params(env), mode="legacy") as client:
            assert await tool_names(client) >= WRITERS


async def test_embedded_emulator_needs_no_token_and_no_config(tmp_path: Path) -> None:
    env = {"MOGPLEX_MCP_STATE_DIR": str(tmp_path)}
    async with Client(stdio_params(env, "--emulator"), mode="legacy") as client:
        repos = await ok(client, "list_repos")
        assert "acme/api" in [repo["fullName"] for repo in repos["repos"]]
        started = await ok(client, "start_run", repoId=REPO_ID, prompt="Try it offline")
        assert started["run"]["status"] in ("pending", "streaming")


async def test_logs_go_to_stderr_and_never_show_the_token(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.txt"
    async with running_emulator(emulator_config()) as emu:
        params = stdio_params(server_env(emu.base_url, tmp_path / "state"), "--log-level", "debug")
        with errlog.open("w") as sink:
            async with Client(stdio_client(params, errlog=sink), mode="legacy") as client:
                await ok(client, "list_repos")
                await error(client, "get_run", runId="00000000-0000-4000-8000-000000000000")
    logged = errlog.read_text()
    assert "DEBUG" in logged  # the level took effect, on stderr (stdout carried the protocol just fine)
    assert DEMO_TOKEN not in logged
