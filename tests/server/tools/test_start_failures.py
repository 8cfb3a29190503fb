"""A start that Mogplex answered with HTTP 500 (issue 21, item 9) is described as that, not as a lost connection.

Driven through a real MCP client, in both protocol eras, against the emulator's `internal_500` fault: the model
must learn that Mogplex failed (so it waits and retries) and that its retry cannot start a second run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/mogplex/runs"


@pytest.mark.parametrize("mode", MODES)
async def test_a_start_upstream_answered_500_says_http_500_and_never_starts_twice(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        emu.inject_fault("internal_500", count=100, method="POST", path=RUNS)
        posts = emu.request_count("POST", RUNS)
        message = await s.error("start_run", repoId=repo, prompt="Add a health check endpoint")
        sent = [r for r in emu.requests if r.method == "POST" and r.path == RUNS][posts:]
        emu.clear_faults()
        assert "HTTP 500" in message and "Mogplex failed while trying to start the run" in message, message
        assert "connection failed" not in message.lower() and "could not reach" not in message.lower(), message
        assert emu.run_ids() == [], "a start answered 500 must not have left a run behind"
        assert len(sent) >= 2 and all(r.status == 500 for r in sent), "retried, and each retry was answered 500"
        assert len({r.idempotency_key for r in sent}) == 1, "every retry carried the same Idempotency-Key"
        again = await s.ok("start_run", repoId=repo, prompt="Add a health check endpoint")  # the model retries
        repeat = await s.ok("start_run", repoId=repo, prompt="Add a health check endpoint")
        assert emu.run_ids() == [again["run"]["runId"]] and repeat["run"]["runId"] == again["run"]["runId"]
        assert again["idempotencyKey"] == sent[0].idempotency_key, "the retry reused the failed start's key"
