"""The commands as users run them, in subprocesses: `serve --transport http`, `demo`, `doctor`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorThread
from tests.e2e.support import UNKNOWN_TOKEN, emulator_config, http_client, ok, server_env

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mogplex_mcp", *args]


async def read_until(process: Process, pattern: str, seconds: float = 20.0) -> re.Match[str]:
    """Read the child's stderr until `pattern` shows up."""
    assert process.stderr is not None
    seen = ""
    with anyio.fail_after(seconds):
        async for chunk in TextReceiveStream(process.stderr):
            seen += chunk
            found = re.search(pattern, seen)
            if found:
                return found
    raise AssertionError(f"{pattern!r} never appeared in stderr:\n{seen}")


@pytest.mark.anyio
async def test_serve_http_listens_serves_and_shuts_down_gracefully(tmp_path: Path) -> None:
    with EmulatorThread(emulator_config()) as emu:
        env = server_env(emu.base_url, tmp_path, PATH="/usr/bin:/bin")
        async with await anyio.open_process(
            command("serve", "--transport", "http", "--port", "0"), env=env, cwd=ROOT
        ) as process:
            url = (await read_until(process, r"listening on (http://\S+/mcp)")).group(1)
            async with httpx2.AsyncClient(timeout=10) as http:
                assert (await http.get(url.replace("/mcp", "/healthz"))).json()["status"] == "ok"
            async with http_client(url, "legacy", DEMO_TOKEN) as client:
                assert (await ok(client, "list_repos"))["count"] >= 1
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await process.wait() == 0


@pytest.mark.anyio
async def test_serve_http_refuses_a_public_bind_without_allowed_hosts(tmp_path: Path) -> None:
    result = await anyio.run_process(
        command("serve", "--transport", "http", "--host", "0.0.0.0"),  # noqa: S104 - refused before binding
        check=False,
        env={"MOGPLEX_MCP_STATE_DIR": str(tmp_path)},
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert b"--allowed-host" in result.stderr


def test_demo_runs_to_completion() -> None:
    result = subprocess.run(
        command("demo", "--speed", "4"), capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("list_repos(", "start_run(", "wait_for_run(", "list_run_events(", "cancel_run("):
        assert f"→ {step}" in out
    assert "status: success" in out  # live progress reached the terminal
    assert "mogplex://runs/" in out and "| Mogplex run" in out  # the log resource was read
    assert "final status cancelled" in out
    assert "Done in" in out
    assert DEMO_TOKEN not in out + result.stderr


def test_doctor_against_the_emulator_reports_ok_and_prints_configs(tmp_path: Path) -> None:
    with EmulatorThread(emulator_config()) as emu:
        env = server_env(emu.base_url, tmp_path, PATH="/usr/bin:/bin")
        result = subprocess.run(
            command("doctor"), env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
        )
    assert result.returncode == 0, result.stdout
    assert "the token works" in result.stdout
    assert "PROBLEM" not in result.stdout
    assert DEMO_TOKEN not in result.stdout + result.stderr
    for host in ("Claude Desktop", "VS Code", "Cursor", "Claude Code", "Codex"):
        assert f"--- {host}" in result.stdout
    assert f'"MOGPLEX_BASE_URL": "{emu.base_url}"' in result.stdout


def test_doctor_names_the_problem_and_the_fix(tmp_path: Path) -> None:
    with EmulatorThread(emulator_config()) as emu:
        env = server_env(emu.base_url, tmp_path, token=UNKNOWN_TOKEN, PATH="/usr/bin:/bin")
        rejected = subprocess.run(
            command("doctor"), env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
        )
    assert rejected.returncode == 1
    assert "PROBLEM  the token was rejected (401)" in rejected.stdout
    assert UNKNOWN_TOKEN not in rejected.stdout

    unset = subprocess.run(
        command("doctor", "--no-network"),
        env={"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert unset.returncode == 1
    assert "PROBLEM  MOGPLEX_TOKEN is not set" in unset.stdout
    assert "fix: create one in Mogplex" in unset.stdout
