"""`/readyz` says whether a replica should get traffic (journal writable, Redis answering, no crashed task, not
draining), with the reason; `/healthz` stays a liveness probe; both answer when every connection is busy."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from tests.redis_server import running_redis, stop_redis
from tests.server.journal_faults import locked
from tests.server.transport.support import PUBLIC, Served, served

pytestmark = pytest.mark.anyio


def probe_url(s: Served, path: str) -> str:
    return s.url.replace("/mcp", path)


async def ready(s: Served) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.get(probe_url(s, "/readyz"))


async def until_ready_is(s: Served, status: int, limit: float = 15) -> dict[str, Any]:
    """/readyz until it answers `status` (its checks are cached for a second); its body."""
    with anyio.fail_after(limit):
        while (answer := await ready(s)).status_code != status:  # noqa: ASYNC110 - polling the probe is the test
            await anyio.sleep(0.2)
    body: dict[str, Any] = answer.json()
    return body


async def test_a_healthy_server_is_ready_and_alive(tmp_path: Path) -> None:
    async with served(tmp_path) as s, httpx2.AsyncClient(timeout=10) as http:
        body = await until_ready_is(s, 200)
        health = await http.get(probe_url(s, "/healthz"))
    assert body == {"status": "ready", "server": "mogplex-mcp", "checks": {"journal": "ok"}}
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_a_locked_journal_makes_it_not_ready_with_the_reason_then_ready_again(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        await until_ready_is(s, 200)
        with locked(tmp_path / "state" / JOURNAL_FILE_NAME):
            body = await until_ready_is(s, 503)
            async with httpx2.AsyncClient(timeout=10) as http:
                alive = await http.get(probe_url(s, "/healthz"))
        assert body["status"] == "not ready"
        assert "start journal cannot be written" in body["checks"]["journal"]
        assert "locked" in body["checks"]["journal"]
        assert alive.status_code == 200, "liveness does not depend on the journal: restarting would not help"
        await until_ready_is(s, 200)


async def test_a_lost_redis_makes_it_not_ready_naming_the_masked_url(tmp_path: Path) -> None:
    with running_redis() as own:
        url = f"redis://:s3cret-pass@127.0.0.1:{own.port}/0"
        async with served(tmp_path, redis_url=url) as s:
            ok = await until_ready_is(s, 200)
            assert ok["checks"] == {"journal": "ok", "redis": "ok"}
            stop_redis(own.process)
            body = await until_ready_is(s, 503)
            assert "Redis at redis://" in body["checks"]["redis"] and "***" in body["checks"]["redis"]
            assert "s3cret-pass" not in str(body)
            with running_redis(own.port):
                await until_ready_is(s, 200, limit=30)


async def test_a_crashed_background_task_makes_it_not_ready(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        readiness = s.states[-1].readiness

        async def crashes() -> None:
            raise RuntimeError("feed reader lost its place")

        await readiness.supervise("redis-feed", crashes)  # reported, not raised: the server stays up
        body = await until_ready_is(s, 503)
        assert body["checks"]["redis-feed"] == "background task crashed (RuntimeError)"
        readiness.report_ok("redis-feed")
        await until_ready_is(s, 200)


async def test_draining_is_not_ready(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        await until_ready_is(s, 200)
        s.states[-1].readiness.begin_drain()
        body = await until_ready_is(s, 503)
        assert body["checks"]["drain"].startswith("draining")


async def _hold(host: str, port: int, opened: Callable[[], Awaitable[None]]) -> None:
    """A connection busy with a request whose body is still arriving (it counts as serving a request)."""
    stream = await anyio.connect_tcp(host, port)
    async with stream:
        head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
        await stream.send(f"{head}Authorization: Bearer mog_busy\r\n\r\n{{".encode())
        await opened()
        await anyio.sleep_forever()


async def test_probes_answer_when_every_connection_is_busy_and_mcp_newcomers_are_refused(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_connections=3, body_timeout_seconds=60.0)
    async with served(tmp_path, options) as s, anyio.create_task_group() as tg:
        host, port = s.url.removeprefix("http://").split("/")[0].split(":")
        held = anyio.Semaphore(0)

        async def opened() -> None:
            held.release()

        for _ in range(3):
            tg.start_soon(_hold, host, int(port), opened)
        for _ in range(3):
            await held.acquire()
        await anyio.sleep(0.2)
        # Fresh connections each time (no keep-alive): every probe arrives while all three slots are busy.
        for _ in range(3):
            for path in ("/healthz", "/readyz"):
                async with httpx2.AsyncClient(timeout=10) as http:
                    answer = await http.get(probe_url(s, path))
                assert answer.status_code == 200, (path, answer.text)
        async with httpx2.AsyncClient(timeout=10) as http:
            with pytest.raises(httpx2.TransportError):
                await http.post(s.url, json={}, headers={"Authorization": "Bearer mog_newcomer"})
        tg.cancel_scope.cancel()
