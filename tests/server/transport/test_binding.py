"""Attack: hijacking a session. Another token (or none) presenting a session id is told it does not exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN
from mogplex_mcp.server.transport.http import HttpOptions
from tests.e2e.support import REPO_ID, ok
from tests.server.resources.test_run_resources import Inbox
from tests.server.transport.support import (
    LOCAL,
    PUBLIC,
    bearer,
    call,
    client,
    open_session,
    rpc_result,
    served,
    subscribe_legacy,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("options", [PUBLIC, LOCAL], ids=["public", "local-only"])
async def test_another_token_cannot_use_read_or_end_a_session(tmp_path: Path, options: HttpOptions) -> None:
    alice_sessions: list[str] = []
    alice_inbox = Inbox()
    async with (
        served(tmp_path, options) as s,
        client(s.url, "legacy", DEMO_TOKEN, alice_inbox, alice_sessions) as alice,
        httpx2.AsyncClient(timeout=10) as bob,
    ):
        assert (await ok(alice, "list_repos"))["count"] >= 1
        [session_id] = alice_sessions
        hijack = {**bearer(OTHER_USER_TOKEN), "Mcp-Session-Id": session_id}

        posted = await call(bob, s.url, OTHER_USER_TOKEN, session_id, "tools/list")
        assert posted.status_code == 404, posted.text
        assert rpc_result(posted)["error"]["message"] == "Session not found"
        # GET is where A's notifications would flow to B; DELETE would end A's session.
        async with bob.stream("GET", s.url, headers={**hijack, "Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 404
            assert b"resources/updated" not in await stream.aread()
        assert (await bob.delete(s.url, headers=hijack)).status_code == 404
        anonymous = await bob.delete(s.url, headers={"Mcp-Session-Id": session_id})
        assert anonymous.status_code == (401 if options is PUBLIC else 404)

        # Alice's session is untouched: it still works and still hears about her own run.
        run_id = (await ok(alice, "start_run", repoId=REPO_ID, prompt="Still mine [scenario:success]"))["run"]["runId"]
        await subscribe_legacy(alice, f"mogplex://runs/{run_id}")
        await alice_inbox.wait(lambda: f"mogplex://runs/{run_id}" in alice_inbox.updated)
        assert alice_sessions == [session_id]


async def test_session_ids_never_reach_the_log_at_info(tmp_path: Path) -> None:
    """`serve --log-level info`, as an operator runs it: the SDK logs each session's id at INFO; ours masks it."""
    command = [sys.executable, "-m", "mogplex_mcp", "serve", "--transport", "http", "--port", "0"]
    command += ["--emulator", "--log-level", "info"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MOGPLEX_MCP_STATE_DIR": str(tmp_path / "state")}
    stderr = bytearray()
    async with await anyio.open_process(command, env=env, cwd=str(Path.cwd())) as process:
        assert process.stderr is not None
        with anyio.fail_after(30):
            while (found := re.search(rb"listening on (http://\S+/mcp)", stderr)) is None:
                stderr += await process.stderr.receive()
        url = found.group(1).decode()
        async with httpx2.AsyncClient(timeout=10) as http:
            session_id = await open_session(http, url, DEMO_TOKEN)
            assert (await call(http, url, DEMO_TOKEN, session_id, "ping")).status_code == 200
            ended = await http.delete(url, headers={**bearer(DEMO_TOKEN), "Mcp-Session-Id": session_id})
            assert ended.status_code == 200
            hijack = await call(http, url, None, session_id, "ping")  # an unknown id, logged by the SDK too
            assert hijack.status_code == 404
        process.terminate()
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr += chunk
    log = stderr.decode(errors="replace")
    assert "Created new transport with session ID" in log  # the SDK's line is there, at INFO ...
    assert session_id not in log  # ... without the id
    assert DEMO_TOKEN not in log
