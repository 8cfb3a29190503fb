"""Attack: slow-loris. Connections that never finish their headers are capped and timed out; /healthz answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from tests.server.resources.test_run_resources import until
from tests.server.transport.support import PUBLIC, served

pytestmark = pytest.mark.anyio
CAP = 50
HALF_OPEN = 70


async def test_half_open_connections_are_capped_and_timed_out_and_healthz_answers(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_connections=CAP, header_timeout_seconds=1.0)
    async with served(tmp_path, options) as s, anyio.create_task_group() as tg:
        host, port = s.url.removeprefix("http://").split("/")[0].split(":")
        closed: list[int] = []

        async def loris(n: int) -> None:
            stream: SocketStream = await anyio.connect_tcp(host, int(port))
            async with stream:
                await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
                try:
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    pass
                closed.append(n)

        for n in range(HALF_OPEN):
            tg.start_soon(loris, n)
        # Past the cap, each newcomer displaced the oldest waiting connection at once.
        await until(lambda: len(closed) >= HALF_OPEN - CAP)
        async with httpx2.AsyncClient(timeout=10) as http:
            health = await http.get(s.url.replace("/mcp", "/healthz"))
        assert health.status_code == 200 and health.json()["status"] == "ok"
        # And the header deadline closes every one that is left.
        await until(lambda: len(closed) == HALF_OPEN)


async def test_headers_trickled_byte_by_byte_still_meet_the_deadline(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, header_timeout_seconds=1.0)
    async with served(tmp_path, options) as s:
        host, port = s.url.removeprefix("http://").split("/")[0].split(":")
        stream = await anyio.connect_tcp(host, int(port))
        sent = 0
        async with stream:
            await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            with anyio.fail_after(20):
                try:
                    while True:  # a byte every 50 ms resets no timer: the deadline counts from the first byte
                        await stream.send(b"z")
                        sent += 1
                        await anyio.sleep(0.05)
                except (anyio.BrokenResourceError, ConnectionError):
                    pass
        assert sent > 1  # it got going before being cut off


async def test_a_keep_alive_connection_still_serves_many_requests(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_connections=4, header_timeout_seconds=1.0)
    async with served(tmp_path, options) as s, httpx2.AsyncClient(timeout=10) as http:
        health = s.url.replace("/mcp", "/healthz")
        answers = [(await http.get(health)).status_code for _ in range(20)]
        assert answers == [200] * 20


async def test_a_body_that_never_arrives_meets_its_deadline(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, body_timeout_seconds=1.0)
    async with served(tmp_path, options) as s:
        host, port = s.url.removeprefix("http://").split("/")[0].split(":")
        stream = await anyio.connect_tcp(host, int(port))
        async with stream:
            head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
            await stream.send(f'{head}Authorization: Bearer mog_x\r\n\r\n{{"jsonrpc": '.encode())  # 500 promised
            with anyio.fail_after(20):
                try:
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    pass
        await until(lambda: s.sdk_sessions() == 0)  # and the session it was opening is discarded
