"""`mogplex-mcp oauth grants list|revoke`, run as the real command against a running server's state dir and
against a real redis-server: what the operator sees, the confirmation, and revocation reaching open streams."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.server.transport.oauth.keys import KEY_ENV
from tests.e2e.support import USER_B_TOKEN
from tests.oauth.streams import get_stream, raw_session
from tests.oauth.support import CALLBACK_PORT, RawFlow, oauth_server
from tests.oauth.test_shared import shared_key  # noqa: F401 - a fixture
from tests.redis_server import RedisServer
from tests.server.transport.support import INITIALIZE, MCP_HEADERS

pytestmark = pytest.mark.anyio

HOSTILE_NAME = "Evil\x1b[2J\x1b[31m Assistant"


async def grants_command(env: dict[str, str], *args: str, answer: str = "") -> tuple[int, str, str]:
    """The real command in a subprocess: exit code, stdout, stderr."""
    done = await anyio.run_process(
        [sys.executable, "-m", "mogplex_mcp", "oauth", "grants", *args],
        input=answer.encode(),
        env=env,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def command_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOGPLEX_", "REDIS"))}
    return env | {"MOGPLEX_MCP_STATE_DIR": str(state_dir)} | extra


async def signed_in(flow: RawFlow, pat: str, name: str) -> dict[str, Any]:
    await flow.register(name=name)
    exchanged = await flow.exchange(await flow.code(pat))
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, Any] = exchanged.json()
    return tokens | {"client_id": flow.client_id}


async def answer_status(http: httpx2.AsyncClient, url: str, access_token: str) -> int:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {access_token}"}
    return (await http.post(url, json=INITIALIZE, headers=headers)).status_code


async def test_the_operator_lists_and_revokes_grants_in_the_state_dir_and_open_streams_end(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = command_env(state_dir)
    async with (
        oauth_server(tmp_path, revocation_check_seconds=0.3) as server,
        httpx2.AsyncClient() as http,
    ):
        alice = await signed_in(RawFlow(server, http), DEMO_TOKEN, "Alice's Claude")
        bob = await signed_in(RawFlow(server, http), USER_B_TOKEN, HOSTILE_NAME)

        code, out, _ = await grants_command(env, "list", "--json")
        assert code == 0
        listed = {row["client_name"]: row for row in json.loads(out)}
        assert set(listed) == {"Alice's Claude", "Evil?[2J?[31m Assistant"}  # control characters never reach a tty
        mine = listed["Alice's Claude"]
        assert mine["redirect_host"] == f"127.0.0.1:{CALLBACK_PORT}"
        assert mine["scopes"] == ["runs:read", "runs:write"]
        assert mine["pat_fingerprint"] == token_fingerprint(DEMO_TOKEN)
        assert mine["key"] == "current"  # sealed with the state dir's key file, which the command read
        assert mine["created_at"] and mine["expires_at"] > mine["created_at"]
        code, table, _ = await grants_command(env, "list")
        assert code == 0 and mine["grant_id"] in table and "Alice's Claude" in table and "\x1b" not in table
        for text in (out, table):
            assert DEMO_TOKEN not in text and USER_B_TOKEN not in text

        session_id = await raw_session(http, server.url, alice["access_token"])
        async with get_stream(http, server.url, alice["access_token"], session_id) as stream:
            code, _, asked = await grants_command(env, "revoke", mine["grant_id"], answer="n\n")
            assert code == 1 and "Revoke? [y/N]" in asked and "Alice's Claude" in asked
            await anyio.sleep(0.8)
            assert stream.ended_at is None  # declined: nothing changed
            assert await answer_status(http, server.url, alice["access_token"]) == 200

            code, out, _ = await grants_command(env, "revoke", mine["grant_id"], answer="y\n")
            assert code == 0 and "Revoked 1 grant(s)" in out
            await stream.wait_for("the revoked grant's GET stream ends", lambda: stream.ended_at is not None, 5)
        assert await answer_status(http, server.url, alice["access_token"]) == 401
        assert await answer_status(http, server.url, bob["access_token"]) == 200  # another grant: untouched

        code, _, missing = await grants_command(env, "revoke", mine["grant_id"], "--yes")
        assert code == 1 and "no live grant" in missing
        code, out, _ = await grants_command(env, "revoke", "--client", bob["client_id"], "--yes")
        assert code == 0 and "Revoked 1 grant(s)" in out
        assert await answer_status(http, server.url, bob["access_token"]) == 401
        code, out, _ = await grants_command(env, "list")
        assert code == 0 and "No live grants" in out


async def test_the_operator_revokes_every_grant_on_redis_with_the_shared_key(
    tmp_path: Path,
    redis_server: RedisServer,
    shared_key: str,  # noqa: F811 - the fixture
) -> None:
    settings = {"redis_url": redis_server.url}
    async with oauth_server(tmp_path, settings=settings) as server, httpx2.AsyncClient() as http:
        first = await signed_in(RawFlow(server, http), DEMO_TOKEN, "Claude")
        second = await signed_in(RawFlow(server, http), USER_B_TOKEN, "ChatGPT")
        elsewhere = tmp_path / "operator"  # another machine: no state dir of the servers
        with_key = command_env(elsewhere, MOGPLEX_REDIS_URL=redis_server.url, **{KEY_ENV: shared_key})

        code, out, _ = await grants_command(with_key, "list", "--json")
        assert code == 0
        keys = {row["client_name"]: row["key"] for row in json.loads(out)}
        assert keys == {"Claude": "current", "ChatGPT": "current"}
        code, out, _ = await grants_command(command_env(elsewhere), "list", "--json", "--redis-url", redis_server.url)
        assert code == 0 and all(row["key"].startswith("unknown") for row in json.loads(out))  # no key: not guessed

        code, out, _ = await grants_command(with_key, "revoke", "--all", "--yes")
        assert code == 0 and "Revoked 2 grant(s)" in out
        for tokens in (first, second):
            assert await answer_status(http, server.url, tokens["access_token"]) == 401
        assert not (elsewhere / "oauth-key").exists() and not (elsewhere / "oauth-grants.sqlite3").exists()
