"""Revoking a grant ends the notification streams its access tokens opened, not only new requests: a
handshake-era session's GET stream and a 2026-era `subscriptions/listen` stream, on this replica at once and on
another replica within the check interval; the same user's PAT-bearer connections are untouched."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import REPO_ID, USER_B_TOKEN, ok
from tests.oauth.streams import get_stream, listening, raw_session, raw_subscribe
from tests.oauth.support import OAuthServer, RawFlow, oauth_server
from tests.oauth.test_shared import shared_key, two_replicas  # noqa: F401 - a fixture
from tests.redis_server import RedisServer, start_redis, stop_redis
from tests.server.resources.test_run_resources import Inbox
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, client, subscribe_legacy

pytestmark = pytest.mark.anyio


async def start_endless(server: OAuthServer, pat: str) -> str:
    """A run that keeps producing events (so its subscribers keep hearing), started with the PAT itself."""
    async with client(server.url, "legacy", pat) as with_pat:
        started = await ok(with_pat, "start_run", repoId=REPO_ID, prompt="Keep talking [scenario:endless]")
    return f"mogplex://runs/{started['run']['runId']}"


async def revoke(http: httpx2.AsyncClient, server: OAuthServer, flow: RawFlow, token: str) -> None:
    revoked = await http.post(f"{server.issuer}/revoke", data={"token": token, "client_id": flow.client_id})
    assert revoked.status_code == 200, revoked.text


async def session_status(http: httpx2.AsyncClient, url: str, pat: str, session_id: str) -> int:
    """What the session answers its owner's PAT (same user): 404 once it was ended."""
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}}
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {pat}", "Mcp-Session-Id": session_id}
    return (await http.post(url, json=body, headers=headers)).status_code


async def test_revoking_a_grant_ends_its_open_streams_in_both_eras_and_leaves_the_pat_users_alone(
    tmp_path: Path,
) -> None:
    async with oauth_server(tmp_path) as server, httpx2.AsyncClient() as http:
        flow = RawFlow(server, http)
        tokens = await flow.tokens(DEMO_TOKEN)
        access = tokens["access_token"]
        uri = await start_endless(server, DEMO_TOKEN)
        session_id = await raw_session(http, server.url, access)
        async with (
            client(server.url, "auto", access) as modern,
            client(server.url, "legacy", DEMO_TOKEN) as with_pat,
            get_stream(http, server.url, access, session_id) as legacy_stream,
            listening(modern, uri) as modern_stream,
        ):
            await raw_subscribe(http, server.url, access, session_id, uri)
            await legacy_stream.wait_for("an update on the GET stream", lambda: legacy_stream.updates() >= 1)
            await modern_stream.wait_for("an update on the listen stream", lambda: modern_stream.updates() >= 1)

            await revoke(http, server, flow, tokens["refresh_token"])

            # Ended at once (no check interval on the replica that revoked), while the run keeps talking.
            await legacy_stream.wait_for("the GET stream ends", lambda: legacy_stream.ended_at is not None, 5)
            await modern_stream.wait_for("the listen stream ends", lambda: modern_stream.ended_at is not None, 5)
            heard = (len(legacy_stream.messages), len(modern_stream.messages))
            await anyio.sleep(1.0)
            assert (len(legacy_stream.messages), len(modern_stream.messages)) == heard  # nothing after the end
            assert await session_status(http, server.url, DEMO_TOKEN, session_id) == 404  # the session is gone
            await ok(with_pat, "list_repos")  # the same user's PAT bearer keeps its session
        watch = server.front_door.watch
        assert watch.sessions_ended >= 1 and watch.streams_ended == 1


async def test_a_grant_revoked_on_another_replica_ends_the_streams_here_within_the_check_interval(
    tmp_path: Path,
    redis_server: RedisServer,
    shared_key: str,  # noqa: F811 - the fixture
) -> None:
    async with (
        two_replicas(tmp_path, redis_server.url, revocation_check_seconds=0.5) as (a, b),
        httpx2.AsyncClient() as http,
    ):
        flow = RawFlow(a, http)
        tokens = await flow.tokens(DEMO_TOKEN)
        access = tokens["access_token"]
        uri = await start_endless(b, DEMO_TOKEN)
        session_id = await raw_session(http, b.url, access)
        async with (
            client(b.url, "auto", access) as modern,
            get_stream(http, b.url, access, session_id) as legacy_stream,
            listening(modern, uri) as modern_stream,
        ):
            await raw_subscribe(http, b.url, access, session_id, uri)
            await legacy_stream.wait_for("an update on B's GET stream", lambda: legacy_stream.updates() >= 1)
            await modern_stream.wait_for("an update on B's listen stream", lambda: modern_stream.updates() >= 1)

            await revoke(http, a, flow, access)  # on A; B learns it from Redis

            await legacy_stream.wait_for("B's GET stream ends", lambda: legacy_stream.ended_at is not None, 5)
            await modern_stream.wait_for("B's listen stream ends", lambda: modern_stream.ended_at is not None, 5)
            assert await session_status(http, b.url, DEMO_TOKEN, session_id) == 404
        assert a.front_door.watch.sessions_ended == 0 and b.front_door.watch.sessions_ended >= 1


async def test_when_mogplex_refuses_the_pat_an_idle_open_stream_ends_without_another_request(tmp_path: Path) -> None:
    async with oauth_server(tmp_path, revocation_check_seconds=0.3) as server, httpx2.AsyncClient() as http:
        flow = RawFlow(server, http)
        access = (await flow.tokens(USER_B_TOKEN))["access_token"]
        uri = await start_endless(server, USER_B_TOKEN)
        session_id = await raw_session(http, server.url, access)
        async with get_stream(http, server.url, access, session_id) as stream:
            await raw_subscribe(http, server.url, access, session_id, uri)
            await stream.wait_for("an update", lambda: stream.updates() >= 1)
            server.emu.emulator.config.tokens.pop(USER_B_TOKEN)  # revoked in Mogplex; the run's follower hears 401
            await stream.wait_for("the stream ends", lambda: stream.ended_at is not None)
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {access}"}
        challenged = await http.post(server.url, json=INITIALIZE, headers=headers)
        assert challenged.status_code == 401 and "resource_metadata=" in challenged.headers["www-authenticate"]


async def test_while_redis_is_lost_open_streams_stay_and_once_it_is_back_without_the_grant_they_end(
    tmp_path: Path,
    shared_key: str,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = start_redis()
    try:
        settings = {"redis_url": redis.url}
        async with (
            oauth_server(tmp_path, settings=settings, revocation_check_seconds=0.2) as server,
            httpx2.AsyncClient() as http,
        ):
            access = (await RawFlow(server, http).tokens(DEMO_TOKEN))["access_token"]
            session_id = await raw_session(http, server.url, access)
            async with get_stream(http, server.url, access, session_id) as stream:
                stop_redis(redis.process)
                await anyio.sleep(1.5)  # several checks, none of which can read the grant
                assert stream.ended_at is None  # a store outage is not a revocation
                warned = [r for r in caplog.records if "could not check open sessions' OAuth grants" in r.message]
                assert len(warned) == 1  # said once, not every 0.2 s
                redis = start_redis(redis.port)  # back, but empty: the grant went with the old one
                await stream.wait_for("the stream ends once the store says the grant is gone", lambda: stream.ended_at)
    finally:
        stop_redis(redis.process)


async def test_the_sdk_clients_hear_nothing_more_after_revocation_while_the_pat_user_still_does(
    tmp_path: Path,
) -> None:
    signed_in, with_pat = Inbox(), Inbox()
    async with oauth_server(tmp_path) as server, httpx2.AsyncClient() as http:
        flow = RawFlow(server, http)
        tokens = await flow.tokens(DEMO_TOKEN)
        uri = await start_endless(server, DEMO_TOKEN)
        async with (
            client(server.url, "legacy", tokens["access_token"], signed_in) as oauth_user,
            client(server.url, "legacy", DEMO_TOKEN, with_pat) as pat_user,
        ):
            await subscribe_legacy(oauth_user, uri)
            await subscribe_legacy(pat_user, uri)
            await signed_in.wait(lambda: len(signed_in.updated) >= 1)
            await revoke(http, server, flow, tokens["refresh_token"])
            await anyio.sleep(0.5)  # whatever was already on the wire has arrived
            heard_before, pat_before = len(signed_in.updated), len(with_pat.updated)
            await with_pat.wait(lambda: len(with_pat.updated) >= pat_before + 3)  # the run keeps talking...
            assert len(signed_in.updated) == heard_before  # ...but not to the revoked grant's client
