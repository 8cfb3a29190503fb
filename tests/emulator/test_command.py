"""`mogplex-mcp emulator` as a user runs it: a subprocess that prints where it listens and answers curl-like calls."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time

import anyio
import httpx2
import pytest
from anyio.abc import Process

from mogplex_mcp.emulator import DEMO_TOKEN

pytestmark = pytest.mark.anyio
STARTUP_BUDGET = 5.0  # generous for slow CI; it normally prints its banner in well under a second


async def read_banner(process: Process) -> str:
    """Everything the command prints up to its last banner line."""
    assert process.stdout is not None
    text = ""
    async for chunk in process.stdout:
        text += chunk.decode()
        if "Press Ctrl-C to stop." in text:
            return text
    raise AssertionError(f"the emulator exited before printing its banner: {text!r}")


async def test_the_command_prints_url_token_and_curl_lines_then_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "mogplex_mcp", "emulator", "--port", "0", "--flavor", "observed"]
    began = time.monotonic()
    async with await anyio.open_process(command) as process:
        try:
            with anyio.fail_after(STARTUP_BUDGET):
                banner = await read_banner(process)
            startup = time.monotonic() - began
            match = re.search(r"base URL:\s+(http://127\.0\.0\.1:\d+)", banner)
            assert match, banner
            base_url = match.group(1)
            headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
            with anyio.fail_after(10):
                async with httpx2.AsyncClient(base_url=base_url, headers=headers) as client:
                    repos = await client.get("/api/v1/mogplex/repos")
                    no_token = await client.get("/api/v1/mogplex/repos", headers={"Authorization": ""})
        finally:
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await process.wait()
    assert startup < STARTUP_BUDGET
    assert DEMO_TOKEN in banner and f"export MOGPLEX_BASE_URL={base_url}" in banner
    assert "curl -sS" in banner and "Idempotency-Key" in banner
    assert repos.status_code == 200 and repos.json()["data"]["repos"]
    assert no_token.status_code == 307  # observed flavour: production's login redirect
    assert code == 0


async def test_a_busy_port_is_a_clear_error_not_a_traceback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with anyio.fail_after(20):
            result = await anyio.run_process(
                [sys.executable, "-m", "mogplex_mcp", "emulator", "--port", str(port)], check=False
            )
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "cannot listen" in message and "--port 0" in message and "Traceback" not in message
