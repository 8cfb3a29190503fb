"""Grants on Redis across replicas, the shared key, and the PAT never stored or shown in clear anywhere."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.config import ConfigError
from mogplex_mcp.emulator import DEMO_TOKEN, running_emulator
from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.server.transport.http import build_http_app
from mogplex_mcp.server.transport.oauth.keys import KEY_ENV
from tests.e2e.support import REPO_ID, UNKNOWN_TOKEN, emulator_config, ok
from tests.oauth.support import (
    BrowserSignIn,
    MemoryStorage,
    OAuthServer,
    RawFlow,
    new_page,
    oauth_client,
    oauth_provider,
    oauth_server,
    public_options,
)
from tests.redis_server import RedisServer, free_port, start_redis, stop_redis
from tests.server.harness import settings_for
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, client
from tests.viewer.support import launched_browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def shared_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv(KEY_ENV, key)
    return key


@asynccontextmanager
async def two_replicas(tmp_path: Path, redis_url: str, **oauth: Any) -> AsyncIterator[tuple[OAuthServer, OAuthServer]]:
    """Two servers on one Redis, each with its own state dir, one emulator behind both, one public URL (A's)."""
    port_a = free_port()
    async with running_emulator(emulator_config()) as emu:
        settings_a = {"redis_url": redis_url, "state_dir": tmp_path / "a"}
        settings_b = {"redis_url": redis_url, "state_dir": tmp_path / "b"}
        async with (
            oauth_server(tmp_path, emu=emu, port=port_a, settings=settings_a, **oauth) as a,
            oauth_server(tmp_path, emu=emu, public_port=port_a, settings=settings_b, **oauth) as b,
        ):
            yield a, b


async def status(server: OAuthServer, access_token: str) -> int:
    async with httpx2.AsyncClient() as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {access_token}"}
        return (await http.post(server.url, json=INITIALIZE, headers=headers)).status_code


async def test_a_grant_issued_by_one_replica_is_honoured_refreshed_and_revoked_by_the_other(
    tmp_path: Path, redis_server: RedisServer, shared_key: str
) -> None:
    async with two_replicas(tmp_path, redis_server.url) as (a, b), httpx2.AsyncClient() as http:
        on_a = RawFlow(a, http)
        tokens = await on_a.tokens(DEMO_TOKEN)
        async with client(b.url, "legacy", tokens["access_token"]) as on_b:
            await ok(on_b, "list_repos")
        on_b_flow = RawFlow(b, http)
        on_b_flow.client_id = on_a.client_id  # a registration made on A is valid on B (same key)
        refreshed = await on_b_flow.refresh(tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        fresh = refreshed.json()
        assert await status(a, fresh["access_token"]) == 200
        revoked = await http.post(
            f"{b.issuer}/revoke",
            data={"token": fresh["access_token"], "client_id": on_a.client_id},
        )
        assert revoked.status_code == 200
        assert await status(a, fresh["access_token"]) == 401


async def test_replicas_on_redis_refuse_to_start_without_a_shared_key(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    async with running_emulator(emulator_config()) as emu:
        settings = settings_for(emu, tmp_path / "state", token=None, redis_url=redis_server.url)
        with pytest.raises(ConfigError, match=KEY_ENV):
            build_http_app(settings, public_options(free_port()))
    assert not (tmp_path / "state" / "oauth-key").exists()


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_the_pat_is_never_in_a_page_redirect_token_log_redis_or_the_state_dir(
    tmp_path: Path, backend: str, shared_key: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def record(response: httpx2.Response) -> None:
        await response.aread()
        seen.append(str(response.url) + repr(response.headers.multi_items()) + response.text)

    redis_url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    async with (
        oauth_server(tmp_path, settings={"redis_url": redis_url}) as server,
        httpx2.AsyncClient(event_hooks={"response": [record]}) as http,
    ):
        raw = RawFlow(server, http)
        await raw.register()
        _, page = await raw.sign_in_page()
        await raw.submit(page, UNKNOWN_TOKEN)  # a wrong PAT first: the page must not echo it
        tokens = await raw.tokens(DEMO_TOKEN)
        refreshed = (await raw.refresh(tokens["refresh_token"])).json()
        async with client(server.url, "legacy", refreshed["access_token"]) as signed_in:
            await ok(signed_in, "list_repos")
        redis_text = await redis_contents(redis_url) if redis_url else ""
    files = b"".join(path.read_bytes() for path in (tmp_path / "state").rglob("*") if path.is_file())
    if redis_url:
        assert ":oauth:grant:" in redis_text  # the grant is there, sealed
    else:
        assert (tmp_path / "state" / "oauth-grants.sqlite3").is_file()
    haystacks = {"pages, redirects, tokens": "\n".join(seen), "logs": caplog.text, "redis": redis_text}
    for pat in (DEMO_TOKEN, UNKNOWN_TOKEN):
        for where, text in haystacks.items():
            assert pat not in text, f"the PAT appears in {where}"
        assert pat.encode() not in files, "the PAT appears in the state dir"


async def redis_contents(url: str) -> str:
    """Every key of the Redis and every string value, as text."""
    store = redis_backend.connect(url)
    try:
        keys = [str(key) for key in await store.client.keys("*")]
        values = [str(await store.client.get(k)) for k in keys if await store.client.type(k) == "string"]
    finally:
        await store.aclose()
    return "\n".join(keys + values)


async def test_the_sdk_client_signed_in_on_one_replica_keeps_working_on_the_other(
    tmp_path: Path, redis_server: RedisServer, shared_key: str
) -> None:
    storage = MemoryStorage()
    async with two_replicas(tmp_path, redis_server.url) as (a, b), launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
        async with oauth_client(a.url, oauth_provider(a.url, sign_in, storage)) as on_a:
            started = await ok(on_a, "start_run", repoId=REPO_ID, prompt="Across replicas [scenario:endless]")
        async with oauth_client(b.url, oauth_provider(b.url, sign_in, storage)) as on_b:  # same stored tokens
            listed = await ok(on_b, "list_runs")
        assert started["run"]["runId"] in str(listed)
        assert sign_in.visits == 1  # B honoured A's grant: no second sign-in


async def test_when_redis_is_lost_a_token_gets_a_retryable_503_not_a_sign_in(tmp_path: Path, shared_key: str) -> None:
    redis = start_redis()
    try:
        async with oauth_server(tmp_path, settings={"redis_url": redis.url}) as server, httpx2.AsyncClient() as http:
            access = (await RawFlow(server, http).tokens(DEMO_TOKEN))["access_token"]
            stop_redis(redis.process)
            lost = await http.post(
                server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {access}"}, timeout=30
            )
            assert lost.status_code == 503 and "retry" in lost.text  # not a 401: the grant is not lost
            redis = start_redis(redis.port)  # an empty Redis: the grants went with the old one
            code = await status(server, access)
            for _ in range(20):  # the circuit breaker asks Redis again within --redis-breaker (3 s)
                if code != 503:
                    break
                await anyio.sleep(0.5)
                code = await status(server, access)
            assert code == 401
            async with client(server.url, "legacy", DEMO_TOKEN) as with_pat:  # PAT bearers keep working
                await ok(with_pat, "list_repos")
    finally:
        stop_redis(redis.process)
