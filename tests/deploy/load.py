"""Real MCP clients working through the proxy while replicas restart: the suite's and the benchmark's load.

Each client is one person of a team with their own token (a token's follower budget is 40 upstream requests a
minute, shared by every replica): start a run, wait on it to the end with chained `wait_for_run` calls, look at
it with `get_run`, again — until told to stop. Every call's outcome and latency is kept.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN, EmulatorHandle, EmulatorThread
from mogplex_mcp.emulator.config import default_tokens
from tests.deploy.proxy import PUBLIC_NAME, Deployment
from tests.e2e.support import REPO_ID, USER_B_TOKEN, emulator_config, text_of

TEAM = (
    DEMO_TOKEN,
    OTHER_USER_TOKEN,
    USER_B_TOKEN,
    "mog_TeamMember4Deploy8Rw5Mn",
    "mog_TeamMember5Deploy2Kp7Vx",
    "mog_TeamMember6Deploy9Hs3Qw",
    "mog_TeamMember7Deploy4Nz6Tb",
    "mog_TeamMember8Deploy6Jc1Ry",
)


def team_upstream(speed: float) -> EmulatorThread:
    """An emulator that knows the team's tokens; no request or start limits (this is about restarts)."""
    tokens = default_tokens() | dict.fromkeys(TEAM, frozenset({"read", "write"}))
    return EmulatorThread(emulator_config(rate_limit_per_minute=0, start_limits=(0, 0, 0), speed=speed, tokens=tokens))


def base_env(emu: EmulatorHandle, home: Path) -> dict[str, str]:
    """What every replica's environment holds besides the doc's own variables: no MOGPLEX_TOKEN (callers bring
    their own), INFO logs (uvicorn's access log names each request's client)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "MOGPLEX_BASE_URL": emu.base_url,
        "MOGPLEX_LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
    }


@asynccontextmanager
async def proxied(d: Deployment, *, token: str = DEMO_TOKEN, local_address: str | None = None) -> AsyncIterator[Client]:
    """A modern-era MCP client reaching the deployment as https://mcp.example.com (over loopback)."""
    transport = httpx2.AsyncHTTPTransport(verify=d.tls, local_address=local_address)
    headers = {"Host": PUBLIC_NAME, "Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(transport=transport, headers=headers, timeout=httpx2.Timeout(30.0, read=90.0)) as http,
        Client(streamable_http_client(d.url, http_client=http), mode="auto") as client,
    ):
        yield client


@dataclass
class Load:
    """What the clients saw."""

    failures: list[str] = field(default_factory=list)
    started: dict[str, str] = field(default_factory=dict)  # prompt -> runId
    finished_reports: Counter[str] = field(default_factory=Counter)
    repeated_events: list[str] = field(default_factory=list)
    samples: list[tuple[float, str, float]] = field(default_factory=list)  # (began, tool, seconds), no waits
    calls: int = 0
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        began = time.monotonic()
        try:
            result: CallToolResult = await client.call_tool(tool, arguments)
        except MCPError as exc:  # an HTTP error from the proxy (a 502 when no replica answered), say
            self.calls += 1
            self.failures.append(f"{tool}: {exc}")
            return None
        self.calls += 1
        if tool != "wait_for_run":  # a wait's length is the run's, not the server's
            self.samples.append((began, tool, time.monotonic() - began))
        if result.is_error or result.structured_content is None:
            self.failures.append(f"{tool}: {text_of(result)[:300]}")
            return None
        content: dict[str, Any] = result.structured_content
        return content


async def keep_working(d: Deployment, n: int, load: Load) -> None:
    """Person `n`: start a run, wait on it to the end (chained waits), look at it; again, until `load.stop`."""
    async with proxied(d, token=TEAM[n]) as client:
        task = 0
        while not load.stop.is_set():
            task += 1
            prompt = f"Person {n}, task {task}: tidy the imports"
            started = await load.call(client, "start_run", {"repoId": REPO_ID, "prompt": prompt})
            if started is None:
                await anyio.sleep(1)
                continue
            run_id = started["run"]["runId"]
            load.started[prompt] = run_id
            await _wait_to_the_end(client, run_id, load)
            await load.call(client, "get_run", {"runId": run_id})


async def _wait_to_the_end(client: Client, run_id: str, load: Load) -> None:
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        arguments: dict[str, Any] = {"runId": run_id, "timeoutSeconds": 10}
        if cursor:
            arguments["afterEventId"] = cursor
        waited = await load.call(client, "wait_for_run", arguments)
        if waited is None:
            await anyio.sleep(1)  # counted as a failure; a person would try again shortly
            continue
        for event in waited["newEvents"]:
            if event["id"] in seen:
                load.repeated_events.append(f"{run_id}/{event['id']}")
            seen.add(event["id"])
        cursor = waited["nextCursor"] or cursor
        if waited["finished"]:
            load.finished_reports[run_id] += 1
            return
