"""Attack: exhausting sessions. No bearer, no session; one token's flood evicts only its own idle sessions."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN
from tests.e2e.support import MODES, Mode, initialize_error, ok
from tests.server.resources.test_run_resources import until
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, PUBLIC, call, client, open_session, served

pytestmark = pytest.mark.anyio
FLOOD = 300
MODERN = {"MCP-Protocol-Version": "2026-07-28"}


async def test_a_flood_without_a_bearer_creates_no_session_and_locks_nobody_out(tmp_path: Path) -> None:
    async with served(tmp_path) as s, httpx2.AsyncClient(timeout=30) as http:
        statuses: list[int] = []
        limiter = anyio.Semaphore(32)

        async def attack() -> None:
            async with limiter:
                statuses.append((await http.post(s.url, json=INITIALIZE, headers=MCP_HEADERS)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(FLOOD):
                tg.start_soon(attack)
        assert statuses == [401] * FLOOD
        assert s.sdk_sessions() == 0 and len(s.sessions) == 0
        assert s.sessions.unauthenticated == FLOOD
        assert s.emu.emulator.request_count() == 0  # nothing reached upstream either

        refused = await http.post(s.url, json=INITIALIZE, headers=MCP_HEADERS)
        assert refused.headers["www-authenticate"] == 'Bearer realm="mogplex-mcp"'
        assert "Authorization: Bearer" in refused.json()["error"]["message"]

        async with client(s.url, "legacy", DEMO_TOKEN) as alice:  # a real user still gets in at once
            assert (await ok(alice, "list_repos"))["count"] >= 1
        assert s.sdk_sessions() <= 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_real_client_without_a_bearer_is_told_how_to_send_one(tmp_path: Path, mode: Mode) -> None:
    async with served(tmp_path) as s:
        message = await initialize_error(s.url, mode, None)
        assert "Authorization: Bearer" in message
        assert s.sdk_sessions() == 0


async def test_malformed_credentials_and_every_method_and_era_are_refused_alike(tmp_path: Path) -> None:
    async with served(tmp_path) as s, httpx2.AsyncClient(timeout=10) as http:
        basic = await http.post(s.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Basic YTpi"})
        assert basic.status_code == 401
        assert 'error="invalid_request"' in basic.headers["www-authenticate"]
        empty = await http.post(s.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer"})
        assert empty.status_code == 401
        listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        modern = await http.post(s.url, json=listed, headers={**MCP_HEADERS, **MODERN})
        assert modern.status_code == 401
        assert (await http.get(s.url, headers={"Accept": "text/event-stream"})).status_code == 401
        assert (await http.delete(s.url, headers={"Mcp-Session-Id": "0" * 32})).status_code == 401
        assert (await http.get(s.url.replace("/mcp", "/healthz"))).status_code == 200  # not behind the gateway
        assert s.sdk_sessions() == 0


async def test_one_tokens_flood_evicts_its_own_oldest_idle_session_and_nobody_elses(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_sessions_per_token=4)
    async with served(tmp_path, options) as s, httpx2.AsyncClient(timeout=10) as http:
        bobs = await open_session(http, s.url, OTHER_USER_TOKEN)
        alices = [await open_session(http, s.url, DEMO_TOKEN) for _ in range(12)]
        assert s.sessions.count_for_token(DEMO_TOKEN) == 4
        assert s.sdk_sessions() == 5
        # The oldest were evicted (their ids are gone), the newest four still answer.
        assert [(await call(http, s.url, DEMO_TOKEN, sid, "ping")).status_code for sid in alices] == [404] * 8 + [
            200
        ] * 4
        assert (await call(http, s.url, OTHER_USER_TOKEN, bobs, "ping")).status_code == 200


async def test_a_token_whose_sessions_are_all_busy_is_refused_without_touching_them(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_sessions_per_token=2)
    async with served(tmp_path, options) as s, httpx2.AsyncClient(timeout=10) as http:
        held = [await open_session(http, s.url, DEMO_TOKEN) for _ in range(2)]
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {DEMO_TOKEN}"}
        async with (
            http.stream("GET", s.url, headers={**headers, "Mcp-Session-Id": held[0]}) as first,
            http.stream("GET", s.url, headers={**headers, "Mcp-Session-Id": held[1]}) as second,
        ):
            assert first.status_code == second.status_code == 200  # both sessions now hold a GET stream
            third = await http.post(
                s.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": headers["Authorization"]}
            )
            assert third.status_code == 429
            assert "all busy" in third.json()["error"]["message"]
        assert s.sdk_sessions() == 2


async def test_a_full_server_evicts_the_floods_unused_sessions_not_a_working_users(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, max_sessions=6)
    async with (
        served(tmp_path, options) as s,
        client(s.url, "legacy", DEMO_TOKEN) as alice,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        assert (await ok(alice, "list_repos"))["count"] >= 1
        for _ in range(40):  # made-up bearers: every one a different caller
            await open_session(http, s.url, f"mog_{secrets.token_hex(12)}")
        assert s.sdk_sessions() == 6  # full, never over
        assert (await ok(alice, "list_repos"))["count"] >= 1  # Alice's session survived the flood
        async with client(s.url, "legacy", OTHER_USER_TOKEN) as bob:  # and a newcomer still gets in
            await bob.list_tools()


async def test_an_idle_session_expires(tmp_path: Path) -> None:
    options = dataclasses.replace(PUBLIC, session_idle_minutes=0.02)  # 1.2 s
    async with served(tmp_path, options) as s, httpx2.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, s.url, DEMO_TOKEN)
        await until(lambda: s.sdk_sessions() == 0)
        assert (await call(http, s.url, DEMO_TOKEN, session_id, "ping")).status_code == 404


@pytest.mark.parametrize("mode", MODES)
async def test_a_stateless_shared_server_refuses_bearer_less_requests_too(tmp_path: Path, mode: Mode) -> None:
    async with served(tmp_path, dataclasses.replace(PUBLIC, stateless=True)) as s:
        assert "Authorization: Bearer" in await initialize_error(s.url, mode, None)
        async with client(s.url, mode, DEMO_TOKEN) as alice:
            assert (await ok(alice, "list_repos"))["count"] >= 1
        assert s.emu.emulator.request_count() == 1  # only Alice's call went upstream
