"""nginx terminating TLS in front of three `--stateless` replicas on one Redis, as docs/scale.md sets it up.

Real MCP clients over HTTPS (a throwaway certificate) through the config file in deploy/nginx/: progress and
listen notifications stream through as they happen; Host, Origin and X-Forwarded-For behave behind the proxy;
and a rolling restart under load (each replica SIGTERMed and started again in turn while clients keep starting
runs and waiting on them) ends with no failed call, no duplicate run and every waited run reported once.
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
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import CallToolResult

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN, EmulatorHandle, EmulatorThread
from mogplex_mcp.emulator.config import default_tokens
from tests.deploy.proxy import PUBLIC_NAME, Deployment, deployment
from tests.e2e.support import REPO_ID, USER_B_TOKEN, emulator_config, text_of
from tests.redis_server import RedisServer
from tests.server.test_shared_pacer import fresh_database
from tests.server.transport.test_notifications import Heard

pytestmark = pytest.mark.anyio

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
# Four people of a team, each with their own token (one token's follower budget is 40 requests a minute).
TEAM = (DEMO_TOKEN, OTHER_USER_TOKEN, USER_B_TOKEN, "mog_TeamMember4Deploy8Rw5Mn")
PING = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def upstream(speed: float) -> EmulatorThread:
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


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error and result.structured_content is not None, text_of(result)
    content: dict[str, Any] = result.structured_content
    return content


async def test_streams_hosts_and_forwarded_headers_behind_nginx(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_url = await fresh_database(redis_server, 11)
    with upstream(speed=1.0) as emu:
        async with deployment(tmp_path, base_env(emu, tmp_path), redis_url) as d:
            async with proxied(d) as waiter, proxied(d, local_address="127.0.0.2") as listener:
                run_id = data(await waiter.call_tool("start_run", {"repoId": REPO_ID, "prompt": "Stream it"}))["run"][
                    "runId"
                ]
                progress_at: list[float] = []
                heard = Heard()
                heard_at: list[float] = []

                async def progress_seen(progress: float, total: float | None, message: str | None) -> None:
                    progress_at.append(time.monotonic())

                async def collect(stream: Any) -> None:
                    async for event in stream:
                        heard.events.append(event)
                        heard_at.append(time.monotonic())

                uri = f"mogplex://runs/{run_id}"
                async with anyio.create_task_group() as tg, listener.listen(resource_subscriptions=[uri]) as stream:
                    tg.start_soon(collect, stream)
                    waited = await waiter.call_tool(
                        "wait_for_run", {"runId": run_id, "timeoutSeconds": 40}, progress_callback=progress_seen
                    )
                    answered = time.monotonic()
                    tg.cancel_scope.cancel()
            # Host and Origin, as a browser tricked by DNS rebinding would send them, through the proxy.
            async with httpx2.AsyncClient(verify=d.tls, timeout=10) as http:
                auth = {"Authorization": f"Bearer {DEMO_TOKEN}", **MCP_HEADERS}
                rebound = await http.post(d.url, json=PING, headers={**auth, "Host": "attacker.example"})
                foreign = await http.post(
                    d.url, json=PING, headers={**auth, "Host": PUBLIC_NAME, "Origin": "https://attacker.example"}
                )
                spoofed = await http.post(
                    d.url, json=PING, headers={**auth, "Host": PUBLIC_NAME, "X-Forwarded-For": "203.0.113.9"}
                )
            logs = "\n".join(replica.log for replica in d.replicas)

    assert data(waited)["finished"] is True
    # Streamed, not buffered: the run's events span about 11 s, and its progress arrived while it went on.
    assert len(progress_at) >= 4, progress_at
    assert answered - progress_at[0] > 3.0, "the first progress notification came seconds before the answer"
    updates = [at for event, at in zip(heard.events, heard_at, strict=True) if isinstance(event, ResourceUpdated)]
    assert len(updates) >= 2 and answered - updates[0] > 3.0, "listen notifications too"
    assert rebound.status_code == 421, rebound.text  # the replicas still check Host behind the proxy
    assert foreign.status_code == 403, foreign.text
    assert spoofed.status_code == 200, spoofed.text
    # The replicas log the client nginx saw (127.0.0.2 for the listener), never a client's own X-Forwarded-For.
    assert '127.0.0.2:0 - "POST /mcp HTTP/1.1" 200' in logs
    assert "203.0.113.9" not in logs


@dataclass
class Load:
    """What the clients saw during the rolling restart."""

    failures: list[str] = field(default_factory=list)
    started: dict[str, str] = field(default_factory=dict)  # prompt -> runId
    finished_reports: Counter[str] = field(default_factory=Counter)
    repeated_events: list[str] = field(default_factory=list)
    calls: int = 0
    restarts_done: anyio.Event = field(default_factory=anyio.Event)

    def check(self, what: str, result: CallToolResult) -> dict[str, Any] | None:
        self.calls += 1
        if result.is_error or result.structured_content is None:
            self.failures.append(f"{what}: {text_of(result)[:300]}")
            return None
        content: dict[str, Any] = result.structured_content
        return content


async def keep_working(d: Deployment, n: int, load: Load) -> None:
    """One client: start a run, wait on it to the end (chained waits), look at it; again, until the restarts end."""
    async with proxied(d, token=TEAM[n]) as client:
        task = 0
        while not load.restarts_done.is_set():
            task += 1
            prompt = f"Client {n}, task {task}: tidy the imports"
            started = load.check(
                "start_run", await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": prompt})
            )
            if started is None:
                continue
            run_id = started["run"]["runId"]
            load.started[prompt] = run_id
            cursor: str | None = None
            seen: set[str] = set()
            while True:
                arguments: dict[str, Any] = {"runId": run_id, "timeoutSeconds": 10}
                if cursor:
                    arguments["afterEventId"] = cursor
                waited = load.check("wait_for_run", await client.call_tool("wait_for_run", arguments))
                if waited is None:
                    continue
                for event in waited["newEvents"]:
                    if event["id"] in seen:
                        load.repeated_events.append(f"{run_id}/{event['id']}")
                    seen.add(event["id"])
                cursor = waited["nextCursor"] or cursor
                if waited["finished"]:
                    load.finished_reports[run_id] += 1
                    break
            load.check("get_run", await client.call_tool("get_run", {"runId": run_id}))


async def test_a_rolling_restart_under_load_fails_no_call_and_starts_no_run_twice(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 12)
    load = Load()
    with upstream(speed=2.0) as emu:
        async with deployment(tmp_path, base_env(emu, tmp_path), redis_url) as d:
            with anyio.fail_after(150):
                async with anyio.create_task_group() as tg:
                    for n in range(len(TEAM)):
                        tg.start_soon(keep_working, d, n, load)
                    await anyio.sleep(3)  # every client is mid-run
                    for replica in d.replicas:  # docs/scale.md's rolling restart, one replica at a time
                        await replica.restart()
                        await anyio.sleep(1)
                    load.restarts_done.set()
            logs = "\n".join(replica.log for replica in d.replicas)
        run_ids = emu.emulator.run_ids()

    assert [replica.exit_codes for replica in d.replicas] == [[0], [0], [0]], "each drained and exited 0"
    assert logs.count("draining (SIGTERM)") == 3
    assert load.failures == [], (load.failures[:5], _lines_about(logs, load.failures[0]))
    assert len(load.started) >= 8, f"only {len(load.started)} runs: the load was too light to mean anything"
    assert sorted(run_ids) == sorted(load.started.values()), "one upstream run per start, none twice"
    assert dict(load.finished_reports) == dict.fromkeys(load.started.values(), 1), "every run reported once"
    assert load.repeated_events == []


def _lines_about(logs: str, failure: str) -> list[str]:
    """The replicas' log lines naming the run a failure names (to see what happened to it)."""
    import re

    run = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", failure)
    return [line for line in logs.splitlines() if run and run.group(0) in line and "POST /mcp" not in line][-30:]
