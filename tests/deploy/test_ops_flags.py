"""The probe slots as an operator sets them, through the real `serve` command: `--probe-slots` and its env var
decide whether a probe still gets in when every connection is busy."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from tests.deploy.test_readiness import _hold
from tests.interop.servers import http_server, server_env

pytestmark = pytest.mark.anyio

BUSY = ("--max-connections", "2", "--body-timeout", "60")


async def _health_with_every_connection_busy(env: dict[str, str], *flags: str) -> int | None:
    """/healthz's status while both connection slots serve a request; None when the connection was refused."""
    async with http_server(env, *BUSY, *flags) as server, anyio.create_task_group() as tg:
        host, port = server.url.removeprefix("http://").split("/")[0].split(":")
        held = anyio.Semaphore(0)

        async def opened() -> None:
            held.release()

        for _ in range(2):
            tg.start_soon(_hold, host, int(port), opened)
        for _ in range(2):
            await held.acquire()
        await anyio.sleep(0.2)
        status: int | None = None
        async with httpx2.AsyncClient(timeout=10) as http:
            try:
                status = (await http.get(server.url.replace("/mcp", "/healthz"))).status_code
            except httpx2.TransportError:
                status = None
        tg.cancel_scope.cancel()
    return status


async def test_probe_slots_from_the_flag_and_the_env_var(tmp_path: Path) -> None:
    env = server_env("http://127.0.0.1:9", "mog_operator", tmp_path)
    assert await _health_with_every_connection_busy(env, "--probe-slots", "0") is None, "no slot kept: refused"
    assert await _health_with_every_connection_busy({**env, "MOGPLEX_PROBE_SLOTS": "1"}) == 200
    # The flag wins over the env var.
    assert await _health_with_every_connection_busy({**env, "MOGPLEX_PROBE_SLOTS": "1"}, "--probe-slots", "0") is None
