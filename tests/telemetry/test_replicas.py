"""Follow leases on the metrics ports of real `serve --stateless` replicas on one Redis: a run two replicas
are asked about is led by exactly one of them, and /metrics says which — without naming the run or the token."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorThread
from tests.e2e.support import emulator_config, http_client, ok
from tests.e2e.test_replicas import replica_env
from tests.interop.servers import HttpServer, http_server
from tests.redis_server import RedisServer
from tests.server.test_shared_pacer import fresh_database
from tests.telemetry.support import Scrape

pytestmark = pytest.mark.anyio
METRICS_AT = re.compile(r"metrics at (http://\S+/metrics)")


async def metrics_url(server: HttpServer) -> str:
    with anyio.fail_after(10):
        while not (found := METRICS_AT.search(server.output.stderr.decode("utf-8", "replace"))):  # noqa: ASYNC110
            await anyio.sleep(0.05)  # the task draining stderr offers no event to wait on
    return found.group(1)


async def test_one_replica_holds_the_follow_lease_and_says_so(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_url = await fresh_database(redis_server, 8)
    with EmulatorThread(emulator_config(default_scenario="endless", rate_limit_per_minute=0)) as emu:
        async with AsyncExitStack() as stack, httpx2.AsyncClient(timeout=10) as http:
            replicas = [
                await stack.enter_async_context(
                    http_server(
                        replica_env(emu.base_url, tmp_path / f"replica-{n}", redis_url),
                        "--stateless",
                        "--metrics-port",
                        "0",
                    )
                )
                for n in range(2)
            ]
            urls = [await metrics_url(replica) for replica in replicas]
            clients = [await stack.enter_async_context(http_client(r.url, "auto", DEMO_TOKEN)) for r in replicas]
            repo_id = (await ok(clients[0], "list_repos"))["repos"][0]["id"]
            run_id = (await ok(clients[0], "start_run", repoId=repo_id, prompt="Lease test"))["run"]["runId"]

            async def scrapes() -> list[Scrape]:
                return [Scrape((await http.get(url)).text) for url in urls]

            async def wait(client_index: int) -> None:
                await ok(clients[client_index], "wait_for_run", runId=run_id, timeoutSeconds=8)

            async with anyio.create_task_group() as tg:
                for index in range(2):
                    tg.start_soon(wait, index)
                with anyio.fail_after(8):  # both replicas follow the run: one leads, one reads its feed
                    while True:
                        now = await scrapes()
                        leases = [s.value("mogplex_mcp_follow_leases_held") for s in now]
                        if all(s.value("mogplex_mcp_runs_followed") == 1 for s in now) and sum(leases) >= 1:
                            break
                        await anyio.sleep(0.1)
                tg.cancel_scope.cancel()
            assert sorted(leases) == [0, 1]
            for scrape in await scrapes():
                assert scrape.value("mogplex_mcp_redis_commands_total", operation="take_a_follow_lease") >= 1
                assert run_id not in scrape.text and DEMO_TOKEN not in scrape.text and redis_url not in scrape.text
