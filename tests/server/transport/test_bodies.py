"""Attack: many large request bodies at once (issue 23, #9). Bodies in flight are capped per client address and
in all; a body too large, or one without a plausible bearer, is refused before it is read; real callers go on.

Caps are scaled down (64 KiB a request, 256 KiB per address, 512 KiB in all) so the flood is small and fast;
the memory this saves at the default caps is measured in bench/ (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.server.transport.bodies import BodyBudget
from tests.server.resources.test_run_resources import until
from tests.server.transport.support import PUBLIC, Served, client, served

pytestmark = pytest.mark.anyio
KIB = 1024
CAPPED = dataclasses.replace(
    PUBLIC, max_body_bytes=64 * KIB, max_body_bytes_per_client=256 * KIB, max_body_bytes_in_flight=512 * KIB
)


def budget(s: Served) -> BodyBudget:
    bodies: BodyBudget = s.app.state.bodies
    return bodies


@asynccontextmanager
async def connection(s: Served, source: str = "127.0.0.1") -> AsyncIterator[SocketStream]:
    host, port = s.url.removeprefix("http://").split("/")[0].split(":")
    stream = await anyio.connect_tcp(host, int(port), local_host=source)
    async with stream:
        yield stream


def post_head(length: int, token: str = "mog_MadeUpBearer0001") -> bytes:
    return (
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def status_of(stream: SocketStream) -> int:
    """The status of the answer on `stream` (it comes before the body was sent, or the test fails)."""
    with anyio.fail_after(5):
        head = b""
        while b"\r\n" not in head:
            head += await stream.receive()
    return int(head.split(b" ")[1])


async def test_a_body_over_the_cap_is_refused_on_its_length_before_it_is_read(tmp_path: Path) -> None:
    async with served(tmp_path, CAPPED) as s, connection(s) as stream:
        await stream.send(post_head(65 * KIB))  # and not one byte of the body
        assert await status_of(stream) == 413
        assert budget(s).in_flight == 0


async def test_a_body_without_a_plausible_bearer_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with served(tmp_path, CAPPED) as s, connection(s) as stream:
        await stream.send(post_head(60 * KIB, token="mog_<script>"))
        assert await status_of(stream) == 401
        assert budget(s).peak == 0, "nothing of it was counted, let alone read"


async def test_slow_bodies_are_capped_per_address_and_in_all_and_real_callers_go_on(tmp_path: Path) -> None:
    async with served(tmp_path, CAPPED) as s, AsyncExitStack() as stack:
        # One address opens 4 bodies of 60 KiB, sending a few bytes of each: 240 KiB held, its share is full.
        for n in range(4):
            stream = await stack.enter_async_context(connection(s))
            await stream.send(post_head(60 * KIB, token=f"mog_MadeUpBearer{n:04}") + b'{"jsonrpc"')
        await until(lambda: budget(s).held_by("127.0.0.1") == 240 * KIB)
        fifth = await stack.enter_async_context(connection(s))
        await fifth.send(post_head(60 * KIB))
        assert await status_of(fifth) == 429, "past its address's share, before its body is read"
        # Other addresses fill the rest of the server's budget (512 KiB): then everyone gets 503 …
        for n in range(4):
            stream = await stack.enter_async_context(connection(s, "127.0.0.2"))
            await stream.send(post_head(60 * KIB, token=f"mog_OtherBearer{n:04}") + b"{")
        await until(lambda: budget(s).in_flight == 480 * KIB)
        late = await stack.enter_async_context(connection(s, "127.0.0.3"))
        await late.send(post_head(60 * KIB))
        assert await status_of(late) == 503
        assert budget(s).peak <= 512 * KIB
        # … while small requests (a real MCP call is a few hundred bytes) still fit and are served.
        async with client(s.url, "legacy", DEMO_TOKEN) as real:
            repos = await real.call_tool("list_repos", {})
            assert not repos.is_error
    await until(lambda: budget(s).in_flight == 0)  # every refused or dropped body gave its bytes back


async def test_a_body_built_to_be_costly_to_parse_is_refused_and_the_server_goes_on(tmp_path: Path) -> None:
    """Within the size cap, the worst JSON to parse (nesting 500,000 deep; 100,000 tiny keys) is answered with an
    error at once, and real calls go on."""
    nested = b"[" * 500_000 + b"]" * 500_000
    wide = ("{" + ",".join(f'"k{n}":0' for n in range(60_000)) + "}").encode()
    options = dataclasses.replace(
        CAPPED, max_body_bytes=1024 * KIB, max_body_bytes_per_client=4096 * KIB, max_body_bytes_in_flight=4096 * KIB
    )
    async with served(tmp_path, options) as s:
        for body in (nested, wide):
            async with connection(s) as stream:
                await stream.send(post_head(len(body)) + body)
                assert 400 <= await status_of(stream) < 500
        async with client(s.url, "legacy", DEMO_TOKEN) as real:
            assert not (await real.call_tool("list_repos", {})).is_error
