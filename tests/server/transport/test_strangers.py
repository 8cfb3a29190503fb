"""Attack: made-up bearers hold sessions, streams and connections (issue 23, "Also measured"). Callers whose
token upstream has not accepted have their own small budget per client address and in all, so they cannot fill
`--max-sessions` or `--max-connections`; /healthz and /readyz never compete with MCP traffic.

Scaled down: 40 sessions, 20 connections, 4 unverified sessions/requests per address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import USER_B_TOKEN
from tests.server.resources.test_run_resources import until
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, PUBLIC, Served, bearer, served
from tests.server.transport.test_unverified import caller

pytestmark = pytest.mark.anyio
SMALL = dataclasses.replace(
    PUBLIC,
    max_sessions=40,
    max_connections=20,
    max_unverified_sessions_per_client=4,
    max_unverified_sessions=10,
    max_unverified_requests_per_client=4,
    max_unverified_requests=10,
)


def from_address(source: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address=source), timeout=10)


async def try_session(http: httpx2.AsyncClient, url: str, token: str) -> str | None:
    opened = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(token)})
    return opened.headers.get("mcp-session-id") if opened.status_code == 200 else None


@asynccontextmanager
async def held_stream(tg: TaskGroup, url: str, token: str, session_id: str, source: str) -> AsyncIterator[list[int]]:
    """A GET notification stream on `session_id`, held open until the block ends; yields [its status]."""
    status: list[int] = []
    done = anyio.Event()

    async def hold() -> None:
        async with from_address(source) as http:
            headers = {**bearer(token), "Accept": "text/event-stream", "Mcp-Session-Id": session_id}
            async with http.stream("GET", url, headers=headers) as response:
                status.append(response.status_code)
                await done.wait()

    tg.start_soon(hold)
    with anyio.fail_after(10):
        while not status:  # noqa: ASYNC110 - the stream has no other signal
            await anyio.sleep(0.01)
    try:
        yield status
    finally:
        done.set()


async def test_made_up_bearers_hold_only_their_own_small_share_of_sessions_and_streams(tmp_path: Path) -> None:
    async with (
        served(tmp_path, SMALL) as s,
        from_address("127.0.0.1") as http,
        anyio.create_task_group() as tg,
        AsyncExitStack() as stack,
    ):
        tokens = [f"mog_MadeUpHolder{n % 5:04}xx" for n in range(20)]
        opened = [(token, await try_session(http, s.url, token)) for token in tokens]
        live = [(token, sid) for token, sid in opened if sid is not None and s.sessions.get(sid) is not None]
        assert len(s.sessions) == len(live) == 4, (
            "20 opened by 5 made-up bearers from one address: 4 kept, idle evicted"
        )
        streams = []
        for token, session_id in live:  # each kept session's GET stream, held open: now they are busy
            assert session_id is not None
            streams.append(await stack.enter_async_context(held_stream(tg, s.url, token, session_id, "127.0.0.1")))
        assert all(status == [200] for status in streams)
        assert s.app.state.strangers.of("127.0.0.1") == 4
        refused = await http.post(s.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer("mog_MadeUpHolder9999xx")})
        assert refused.status_code == 429
        # A real user — new to this server, so a stranger too until upstream accepts its token — gets in.
        async with caller(s.url, USER_B_TOKEN, "127.0.0.2") as real:
            assert not (await real.call_tool("list_repos", {})).is_error
        assert s.states[-1].pool.gate.verified(USER_B_TOKEN)
        health = await http.get(s.url.replace("/mcp", "/healthz"))
        assert health.status_code == 200
        await stack.aclose()


async def test_probes_answer_when_every_connection_is_busy(tmp_path: Path) -> None:
    options = dataclasses.replace(SMALL, max_connections=8)
    async with (
        served(tmp_path, options) as s,
        from_address("127.0.0.1") as http,
        anyio.create_task_group() as tg,
        AsyncExitStack() as stack,
    ):
        async with caller(s.url, DEMO_TOKEN, "127.0.0.1") as user:  # a verified user …
            assert not (await user.call_tool("list_repos", {})).is_error
        sessions = [await try_session(http, s.url, DEMO_TOKEN) for _ in range(8)]
        for session_id in sessions:  # … holds 8 streams: every connection is serving a request
            assert session_id is not None
            await stack.enter_async_context(held_stream(tg, s.url, DEMO_TOKEN, session_id, "127.0.0.1"))
        await until(lambda: sum(sess.in_flight for sess in _open(s)) >= 8)
        async with from_address("127.0.0.3") as probe:
            for _ in range(3):
                assert (await probe.get(s.url.replace("/mcp", "/healthz"))).status_code == 200
            with pytest.raises(httpx2.TransportError):  # closed unanswered: the probes' room is for probes
                await probe.post(s.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(USER_B_TOKEN)})
        await stack.aclose()


def _open(s: Served) -> list:  # type: ignore[type-arg]
    return list(s.sessions._sessions.values())
