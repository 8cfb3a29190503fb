"""nginx terminating TLS in front of three `--stateless` replicas on one Redis, as docs/scale.md sets it up.

Real MCP clients over HTTPS (a throwaway certificate) through the config file in deploy/nginx/: progress and
listen notifications stream through as they happen; Host, Origin and X-Forwarded-For behave behind the proxy;
and a rolling restart under load (each replica SIGTERMed and started again in turn while clients keep starting
runs and waiting on them) ends with no failed call, no duplicate run and every waited run reported once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import CallToolResult

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.deploy.load import Load, base_env, keep_working, proxied, team_upstream
from tests.deploy.proxy import PUBLIC_NAME, deployment
from tests.e2e.support import REPO_ID, text_of
from tests.redis_server import RedisServer
from tests.server.test_shared_pacer import fresh_database
from tests.server.transport.test_notifications import Heard

pytestmark = pytest.mark.anyio

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
PEOPLE = 4


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error and result.structured_content is not None, text_of(result)
    content: dict[str, Any] = result.structured_content
    return content


async def test_streams_hosts_and_forwarded_headers_behind_nginx(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_url = await fresh_database(redis_server, 11)
    with team_upstream(speed=1.0) as emu:
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


async def test_a_rolling_restart_under_load_fails_no_call_and_starts_no_run_twice(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_url = await fresh_database(redis_server, 12)
    load = Load()
    with team_upstream(speed=2.0) as emu:
        async with deployment(tmp_path, base_env(emu, tmp_path), redis_url) as d:
            with anyio.fail_after(150):
                async with anyio.create_task_group() as tg:
                    for n in range(PEOPLE):
                        tg.start_soon(keep_working, d, n, load)
                    await anyio.sleep(3)  # every client is mid-run
                    for replica in d.replicas:  # docs/scale.md's rolling restart, one replica at a time
                        await replica.restart()
                        await anyio.sleep(1)
                    load.stop.set()
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
