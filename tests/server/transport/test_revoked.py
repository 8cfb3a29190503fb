"""A revoked token reads nothing cached (issue 23, #7): cached run data (runs list, a finished run, its
transcript, resources/list) goes only to a token upstream accepted within MOGPLEX_RECHECK_TOKEN_SECONDS; past
that the server asks upstream first, and after a 401 it serves nothing from cache at all.

Scaled down: the re-check comes after 1 s instead of 5 minutes.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mogplex_mcp.emulator.traffic import token_tag
from tests.e2e.support import REPO_ID, USER_B_TOKEN, error, ok
from tests.server.transport.support import PUBLIC, Served, client, served

pytestmark = pytest.mark.anyio
RECHECK = 1.0


def upstream_requests(s: Served, token: str) -> int:
    tag = token_tag(token)
    return sum(1 for record in s.emu.emulator.log.snapshot() if record.token_tag == tag)


async def finished_run(s: Served) -> str:
    async with client(s.url, "legacy", USER_B_TOKEN) as user:
        run_id: str = (await ok(user, "start_run", repoId=REPO_ID, prompt="Fix the flaky test."))["run"]["runId"]
        with anyio.fail_after(30):
            while not (await ok(user, "wait_for_run", runId=run_id, timeoutSeconds=10))["finished"]:
                pass
    return run_id


async def test_after_revocation_cached_runs_are_not_served(tmp_path: Path) -> None:
    async with served(tmp_path, PUBLIC, recheck_token_seconds=RECHECK) as s:
        run_id = await finished_run(s)
        del s.emu.emulator.config.tokens[USER_B_TOKEN]  # the user revokes the token in Mogplex
        await anyio.sleep(RECHECK + 0.2)
        before = upstream_requests(s, USER_B_TOKEN)
        async with client(s.url, "legacy", USER_B_TOKEN) as revoked:
            assert "401" in await error(revoked, "list_runs")  # asked upstream once: refused
            assert "401" in await error(revoked, "get_run", runId=run_id)
            assert "401" in await error(revoked, "wait_for_run", runId=run_id, timeoutSeconds=1)
            with pytest.raises(Exception, match="401"):
                await revoked.read_resource(f"mogplex://runs/{run_id}/log")
            listed = await revoked.list_resources()
            assert not [r for r in listed.resources if run_id in str(r.uri)], "no titles of its runs either"
        assert upstream_requests(s, USER_B_TOKEN) - before <= 2, "after the 401, refused locally"


async def test_within_the_recheck_window_a_401_still_ends_it_at_once(tmp_path: Path) -> None:
    async with served(tmp_path, PUBLIC, recheck_token_seconds=600.0) as s:
        run_id = await finished_run(s)
        del s.emu.emulator.config.tokens[USER_B_TOKEN]
        async with client(s.url, "legacy", USER_B_TOKEN) as revoked:
            assert "401" in await error(revoked, "list_repos")  # any call that reaches upstream sees the 401
            assert "401" in await error(revoked, "get_run", runId=run_id), "never served from cache after a 401"
            assert "401" in await error(revoked, "list_runs")
