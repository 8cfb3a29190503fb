"""Attack: made-up bearers flood the upstream queue (issue 23, #6). A stranger's flood from one address cannot
delay another caller's first call beyond one turn; verification attempts are bounded per address and per bearer;
a token the upstream accepted is remembered across a restart (the state dir), so its user skips the queue.

Scaled down: 2 upstream requests per token (so 2 for all unverified bearers together), 4 waiting per address,
0.4 s upstream latency. Latency is compared as a ratio within one run (flood vs no flood), never to a constant.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mogplex_mcp.emulator import OTHER_USER_TOKEN, READ_ONLY_TOKEN
from mogplex_mcp.runs.fingerprints import token_fingerprint
from tests.e2e.support import USER_B_TOKEN
from tests.server.resources.test_run_resources import until
from tests.server.transport.support import MCP_HEADERS, PUBLIC, Served, bearer, open_session, served

pytestmark = pytest.mark.anyio
REPOS = "/api/v1/mogplex/repos"
SCALED: dict[str, Any] = {"upstream_per_token": 2, "unverified_waiting": 4}
FLOOD = 30
LATENCY = 0.4


@asynccontextmanager
async def caller(url: str, token: str, source: str) -> AsyncIterator[Client]:
    """A real MCP client with its own bearer, connecting from the loopback address `source`."""
    transport = httpx2.AsyncHTTPTransport(local_address=source)
    async with (
        httpx2.AsyncClient(transport=transport, headers=bearer(token), timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as connected,
    ):
        yield connected


async def timed_list_repos(url: str, token: str, source: str) -> float:
    async with caller(url, token, source) as connected:
        started = time.monotonic()
        result = await connected.call_tool("list_repos", {})
        took = time.monotonic() - started
    assert not result.is_error
    return took


async def flood(s: Served, http: httpx2.AsyncClient, n: int, answers: list[int]) -> None:
    """One made-up bearer's list_repos call over a raw session, from 127.0.0.1."""
    token = f"mog_MadeUpFlood{n:04}x"
    session_id = await open_session(http, s.url, token)
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_repos", "arguments": {}}}
    headers = {**MCP_HEADERS, **bearer(token), "Mcp-Session-Id": session_id}
    answers.append((await http.post(s.url, json=body, headers=headers)).status_code)


async def test_a_flood_of_made_up_bearers_costs_a_newcomer_at_most_a_turn(tmp_path: Path) -> None:
    # The gateway's own budget for unverified callers is opened wide here, so the flood reaches the upstream gate.
    wide = dataclasses.replace(PUBLIC, max_unverified_sessions_per_client=100, max_unverified_requests_per_client=100)
    async with served(tmp_path, wide, **SCALED) as s:
        s.emu.emulator.inject_fault("delay", count=10_000, method="GET", path=REPOS, delay=LATENCY)
        control = await timed_list_repos(s.url, READ_ONLY_TOKEN, "127.0.0.2")  # a newcomer, no flood
        gate = s.states[-1].pool.gate
        answers: list[int] = []
        async with (
            httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address="127.0.0.1"), timeout=60) as http,
            anyio.create_task_group() as tg,
        ):
            for n in range(FLOOD):
                tg.start_soon(flood, s, http, n, answers)
            await until(lambda: gate.requests_in_flight >= SCALED["upstream_per_token"])
            assert s.app.state.strangers.in_flight > FLOOD // 2, "the flood is in flight while the newcomer calls"
            during = await timed_list_repos(s.url, OTHER_USER_TOKEN, "127.0.0.3")  # another newcomer, mid-flood
        assert len(answers) == FLOOD
        made_up = sum(1 for r in s.emu.emulator.log.snapshot() if r.path == REPOS) - 2
        assert made_up < FLOOD, f"verification attempts from one address are bounded ({made_up} reached upstream)"
        assert during / control < 3, f"the newcomer took {during:.2f} s mid-flood vs {control:.2f} s without"


async def test_an_accepted_token_is_remembered_across_a_restart(tmp_path: Path) -> None:
    async with served(tmp_path, PUBLIC, **SCALED) as s:
        await timed_list_repos(s.url, USER_B_TOKEN, "127.0.0.1")
        assert s.states[-1].pool.gate.verified(USER_B_TOKEN)
        await until(lambda: _recorded(tmp_path) >= 1)  # written through in the background
    async with served(tmp_path, PUBLIC, **SCALED) as restarted:
        gate = restarted.states[-1].pool.gate
        assert gate.verified(USER_B_TOKEN), "known before its first call after the restart: it skips the queue"
        assert not gate.verified(OTHER_USER_TOKEN)
    stored = (tmp_path / "state" / "verified-tokens.sqlite3").read_bytes()
    assert USER_B_TOKEN.encode() not in stored and token_fingerprint(USER_B_TOKEN).encode() in stored


def _recorded(tmp_path: Path) -> int:
    path = tmp_path / "state" / "verified-tokens.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT count(*) FROM verified").fetchone()[0])
        except sqlite3.Error:
            return 0


async def test_made_up_bearers_leave_no_pacer_behind(tmp_path: Path) -> None:
    """Issue 23, #3: following a run with a bearer upstream never accepted makes no per-token state."""
    run_id = "0b7f4a52-9a3e-4c1e-8d2b-5f6a7b8c9d0e"
    async with served(tmp_path, PUBLIC) as s, httpx2.AsyncClient(timeout=30) as http:
        hub = s.states[-1].hub
        for n in range(40):
            token = f"mog_MadeUpFollower{n:04}"
            session_id = await open_session(http, s.url, token)
            arguments = {"runId": run_id, "timeoutSeconds": 1}
            body = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "wait_for_run", "arguments": arguments},
            }
            headers = {**MCP_HEADERS, **bearer(token), "Mcp-Session-Id": session_id}
            assert (await http.post(s.url, json=body, headers=headers)).status_code == 200
        assert hub.pacer_count == 0, "40 made-up bearers followed a run: not one pacer was made for them"
        async with caller(s.url, USER_B_TOKEN, "127.0.0.1") as real:
            started = await real.call_tool("list_repos", {})
            assert not started.is_error
            await real.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 1})
        assert hub.pacer_count == 1, "a token upstream accepted gets its own budget"
