"""The OAuth front door end to end: the Python SDK's OAuth client (dynamic registration, PKCE), a real Chromium
filling the sign-in page, then tools and notifications as the signed-in user; refresh; revocation; scopes;
and the grant dropped when Mogplex stops accepting the PAT."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import REPO_ID, USER_B_TOKEN, error, ok, tool_names
from tests.oauth.support import (
    CALLBACK_PORT,
    BrowserSignIn,
    MemoryStorage,
    RawFlow,
    new_page,
    oauth_client,
    oauth_provider,
    oauth_server,
)
from tests.server.resources.test_run_resources import Inbox
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, client, subscribe_legacy
from tests.viewer.support import launched_browser

pytestmark = pytest.mark.anyio


async def raw_initialize(url: str, access_token: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {access_token}"})


async def test_sdk_client_signs_in_in_chromium_then_uses_tools_and_hears_notifications(tmp_path: Path) -> None:
    inbox, storage = Inbox(), MemoryStorage()
    async with oauth_server(tmp_path) as server, launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
        auth = oauth_provider(server.url, sign_in, storage)
        async with oauth_client(server.url, auth, inbox=inbox) as alice:
            assert "start_run" in await tool_names(alice)
            started = await ok(alice, "start_run", repoId=REPO_ID, prompt="Signed in through OAuth [scenario:endless]")
            run_id = started["run"]["runId"]
            uri = f"mogplex://runs/{run_id}"
            await subscribe_legacy(alice, uri)
            await ok(alice, "cancel_run", runId=run_id)
            await inbox.wait(lambda: uri in inbox.updated)

        assert sign_in.visits == 1
        page = sign_in.page_html[0]
        assert "Test Assistant" in page and f"127.0.0.1:{CALLBACK_PORT}" in page  # who asks, where it goes
        assert storage.tokens is not None and storage.tokens.access_token.startswith("mcpa_")
        assert DEMO_TOKEN not in json.dumps(storage.tokens.model_dump()) + json.dumps(sign_in.landed)
        # The same user with the PAT as a bearer sees the run started through OAuth: one identity.
        async with client(server.url, "legacy", DEMO_TOKEN) as with_pat:
            listed = await ok(with_pat, "list_runs")
            assert run_id in json.dumps(listed)


async def test_an_expired_access_token_is_refreshed_and_the_old_one_stops_working(tmp_path: Path) -> None:
    storage = MemoryStorage()
    async with oauth_server(tmp_path, access_token_minutes=1 / 60) as server, launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
        auth = oauth_provider(server.url, sign_in, storage)
        async with oauth_client(server.url, auth) as alice:
            await ok(alice, "list_repos")
            assert storage.tokens is not None
            first = storage.tokens
            await anyio.sleep(1.5)  # past the access token's one-second life
            await ok(alice, "list_repos")
            assert storage.tokens.access_token != first.access_token
            assert storage.tokens.refresh_token != first.refresh_token  # refresh tokens rotate
        assert sign_in.visits == 1  # refreshed, not signed in again
        expired = await raw_initialize(server.url, first.access_token)
        assert expired.status_code == 401


async def test_revocation_ends_access_for_the_whole_grant(tmp_path: Path) -> None:
    storage = MemoryStorage()
    async with oauth_server(tmp_path) as server, launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
        async with oauth_client(server.url, oauth_provider(server.url, sign_in, storage)) as alice:
            await ok(alice, "list_repos")
        assert storage.tokens is not None and storage.client_info is not None
        tokens, client_id = storage.tokens, storage.client_info.client_id
        assert (await raw_initialize(server.url, tokens.access_token)).status_code == 200
        async with httpx2.AsyncClient() as http:
            revoked = await http.post(
                f"{server.issuer}/revoke", data={"token": tokens.refresh_token or "", "client_id": client_id}
            )
            assert revoked.status_code == 200
            refused = await raw_initialize(server.url, tokens.access_token)
            assert refused.status_code == 401
            assert "resource_metadata=" in refused.headers["www-authenticate"]
            refreshed = await http.post(
                f"{server.issuer}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens.refresh_token or "",
                    "client_id": client_id,
                },
            )
            assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


async def test_a_read_only_grant_sees_the_read_only_tools_and_is_told_why_a_write_is_refused(tmp_path: Path) -> None:
    async with oauth_server(tmp_path) as server, launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN, access="read")
        auth = oauth_provider(server.url, sign_in, MemoryStorage())
        for mode in ("legacy", "auto"):
            async with oauth_client(server.url, auth, mode=mode) as reader:
                names = await tool_names(reader)
                assert "get_run" in names and not names & {"start_run", "cancel_run", "continue_run"}
                refused = await error(reader, "start_run", repoId=REPO_ID, prompt="Not allowed")
                assert "runs:write" in refused and "read-only" in refused
        assert not [r for r in server.emu.emulator.requests if r.method == "POST"]  # nothing was started


async def test_when_mogplex_stops_accepting_the_pat_the_grant_is_dropped_and_the_client_is_challenged(
    tmp_path: Path,
) -> None:
    storage = MemoryStorage()
    async with oauth_server(tmp_path) as server, launched_browser() as browser:
        sign_in = BrowserSignIn(await new_page(browser), USER_B_TOKEN)
        async with oauth_client(server.url, oauth_provider(server.url, sign_in, storage)) as bob:
            await ok(bob, "list_repos")
            assert storage.tokens is not None
            server.emu.emulator.config.tokens.pop(USER_B_TOKEN)  # revoked in Mogplex
            message = await error(bob, "list_repos")
            assert "401" in message
        challenged = await raw_initialize(server.url, storage.tokens.access_token)
        assert challenged.status_code == 401
        assert "resource_metadata=" in challenged.headers["www-authenticate"]


async def test_a_page_of_another_site_cannot_show_the_sign_in_page_in_a_frame(tmp_path: Path) -> None:
    async with oauth_server(tmp_path) as server, launched_browser() as browser, httpx2.AsyncClient() as http:
        raw = RawFlow(server, http)
        await raw.register()
        location, _ = await raw.sign_in_page()
        page = await new_page(browser)
        await page.route("http://attacker.test/", lambda route: route.fulfill(
            content_type="text/html", body=f'<iframe id="f" src="{location}" width="600" height="600"></iframe>'
        ))  # fmt: skip
        await page.goto("http://attacker.test/", wait_until="load")  # "load" waits for the frame too
        (framed,) = [frame for frame in page.frames if frame is not page.main_frame]
        assert framed.url.startswith("chrome-error://")  # Chromium refused to render it (frame-ancestors)
        assert await framed.locator("#pat").count() == 0
