"""An access token acts as its PAT: the same user through OAuth and through a PAT header is one identity for
start de-duplication, sessions and the runs list; another user's PAT is a stranger to it."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN
from tests.e2e.support import REPO_ID, ok
from tests.oauth.support import RawFlow, oauth_server
from tests.server.transport.support import INITIALIZE, MCP_HEADERS, call, client, open_session

pytestmark = pytest.mark.anyio


async def test_a_start_through_oauth_and_the_same_start_with_the_pat_are_one_run(tmp_path: Path) -> None:
    async with oauth_server(tmp_path) as server, httpx2.AsyncClient() as http:
        access = (await RawFlow(server, http).tokens(DEMO_TOKEN))["access_token"]
        task = {"repoId": REPO_ID, "prompt": "One run, two doors [scenario:endless]"}
        async with client(server.url, "legacy", access) as through_oauth:
            first = await ok(through_oauth, "start_run", **task)
        async with client(server.url, "auto", DEMO_TOKEN) as with_pat:
            again = await ok(with_pat, "start_run", **task)
        assert again["run"]["runId"] == first["run"]["runId"]
        posts = [r for r in server.emu.emulator.requests if r.method == "POST"]
        assert len({r.idempotency_key for r in posts}) == 1  # one Idempotency-Key: the PAT's fingerprint's claim


async def test_a_session_opened_through_oauth_belongs_to_the_pat_and_to_nobody_else(tmp_path: Path) -> None:
    async with oauth_server(tmp_path) as server, httpx2.AsyncClient() as http:
        access = (await RawFlow(server, http).tokens(DEMO_TOKEN))["access_token"]
        session_id = await open_session(http, server.url, access)
        assert (await call(http, server.url, DEMO_TOKEN, session_id, "tools/list")).status_code == 200
        stranger = await call(http, server.url, OTHER_USER_TOKEN, session_id, "tools/list")
        assert stranger.status_code == 404
        no_token = await http.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
        assert no_token.status_code == 401
        assert "resource_metadata=" in no_token.headers["www-authenticate"]
