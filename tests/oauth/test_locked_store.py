"""A grant store another process holds locked stalls only the caller that needs to write it.

The SQLite grant store works in worker threads with a bounded wait, so while a second process holds the file's
write lock, a revocation waits (then gets a clear 503 to retry) and every other request — health probes, MCP
calls authorised by a PAT or by an access token — goes on as before. Times are compared with each other in one
run, never with a wall-clock limit.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.runs.local.grants import FILE_NAME
from tests.oauth.support import OAuthServer, RawFlow, oauth_server, options_from_cli
from tests.server.transport.support import INITIALIZE, MCP_HEADERS

pytestmark = pytest.mark.anyio

# Holds the write lock (BEGIN IMMEDIATE) on the file until its stdin closes.
_HOLDER = (
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); db.execute('BEGIN IMMEDIATE'); "
    "print('locked', flush=True); sys.stdin.read(); db.execute('ROLLBACK')"
)


async def timed_requests(http: httpx2.AsyncClient, server: OAuthServer, access_token: str) -> list[float]:
    """Seconds each of a few health probes and MCP initialises (by PAT and by access token) took, all answered."""
    took: list[float] = []
    for bearer in (None, DEMO_TOKEN, access_token) * 3:
        started = time.perf_counter()
        if bearer is None:
            response = await http.get(f"{server.issuer}/healthz")
        else:
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {bearer}"}
            response = await http.post(server.url, json=INITIALIZE, headers=headers)
        took.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return took


async def test_a_locked_grant_store_delays_only_the_caller_that_writes_it(tmp_path: Path) -> None:
    flags = options_from_cli("--oauth-store-wait-seconds", "1")  # the locked caller's bounded wait
    async with oauth_server(tmp_path, **flags) as server, httpx2.AsyncClient(timeout=30) as http:
        raw = RawFlow(server, http)
        tokens = await raw.tokens(DEMO_TOKEN)
        control = await timed_requests(http, server, tokens["access_token"])
        revoke = {"token": tokens["refresh_token"], "client_id": raw.client_id}

        holder_command = [sys.executable, "-c", _HOLDER, str(tmp_path / "state" / FILE_NAME)]
        async with await anyio.open_process(holder_command) as holder:
            assert holder.stdout is not None and holder.stdin is not None
            assert (await holder.stdout.receive()).strip() == b"locked"
            refused: list[httpx2.Response] = []
            waited: list[float] = []
            during: list[float] = []

            async def revoke_while_locked() -> None:
                started = time.perf_counter()
                refused.append(await http.post(f"{server.issuer}/revoke", data=revoke))
                waited.append(time.perf_counter() - started)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(revoke_while_locked)
                while not waited:  # others' requests all the while the revocation waits on the file
                    during += await timed_requests(http, server, tokens["access_token"])
            await holder.stdin.aclose()

        # The revoking caller waited its bounded time and was told to retry...
        assert waited[0] > 0.9, waited  # it did wait out the flagged 1 s before giving up
        assert refused[0].status_code == 503, refused[0].text
        assert refused[0].json()["error"] == "temporarily_unavailable" and "retry" in refused[0].text
        assert refused[0].headers["retry-after"]
        assert waited[0] > 10 * statistics.median(control), (waited, control)  # it really was held up
        # ...while nobody else waited: not one request came near that wait (were the event loop stalled, the
        # requests sent meanwhile would each have waited out the rest of it).
        assert max(during) < waited[0] / 4, (during, waited)
        assert statistics.median(during) < waited[0] / 20, (during, control, waited)
        # The access token still works (nothing was revoked), and retried once the file is free, revocation works.
        assert (
            await http.post(
                server.url,
                json=INITIALIZE,
                headers={**MCP_HEADERS, "Authorization": f"Bearer {tokens['access_token']}"},
            )
        ).status_code == 200
        assert (await http.post(f"{server.issuer}/revoke", data=revoke)).status_code == 200
        ended = await http.post(
            server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert ended.status_code == 401
