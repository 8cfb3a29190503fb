"""continue_run through real clients: what carries over, de-duplication, refusal on active runs, read-only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mogplex_mcp.emulator import EmulatorConfig
from tests.server.harness import MODES, Mode, Session, session

pytestmark = pytest.mark.anyio

REPO_WEB = "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6"  # acme/web


def _sent(s: Session, idempotency_key: str) -> dict[str, Any]:
    """The normalized start body the emulator received under this key."""
    entry = s.emulator.emulator.store.key(idempotency_key)
    assert entry is not None, "no start arrived under that key"
    body: dict[str, Any] = json.loads(entry.fingerprint)
    return body


async def _finished(s: Session, prompt: str, **extra: Any) -> dict[str, Any]:
    started = await s.start(prompt, **extra)
    run_id = started["run"]["runId"]
    for _ in range(20):
        waited = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        if waited["finished"]:
            return waited
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize("mode", MODES)
async def test_a_follow_up_continues_on_the_previous_branch_directory_harness_and_conversation(
    tmp_path: Path, mode: Mode
) -> None:
    async with session(tmp_path, mode) as s:
        first = await _finished(
            s,
            "Add a health check [scenario:success]",
            repoId=REPO_WEB,
            harness="claude-code",
            createBranch=True,
            rootDirectory="apps/web",
            conversationId="conv-123",
            workspaceSessionId="ws-456",
        )
        previous = first["run"]
        follow_up = await s.ok("continue_run", runId=previous["runId"], prompt="Also document the endpoint.")
        assert follow_up["continuedFrom"] == previous["runId"] and follow_up["replayed"] is False
        run = follow_up["run"]
        assert run["runId"] != previous["runId"]
        assert run["baseBranch"] == previous["workingBranch"] and run["workingBranch"] == previous["workingBranch"]
        assert run["repoId"] == REPO_WEB and run["harness"] == "claude-code"
        sent = _sent(s, follow_up["idempotencyKey"])
        assert sent["base_branch"] == previous["workingBranch"] and sent["root_directory"] == "apps/web"
        assert sent["conversation_id"] == "conv-123" and sent["workspace_session_id"] == "ws-456"
        assert sent["harness"] == "claude-code" and sent["prompt"] == "Also document the endpoint."
        assert "conversationId=conv-123" in follow_up["carriedOver"]
        assert previous["runId"] in follow_up["summary"]

        other = await s.ok("continue_run", runId=previous["runId"], prompt="Now with codex.", harness="codex")
        assert other["run"]["harness"] == "codex"


@pytest.mark.parametrize("mode", MODES)
async def test_a_retried_follow_up_is_one_run(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        previous = (await _finished(s, "Fix the flaky test [scenario:success]"))["run"]["runId"]
        runs_before = len(s.emulator.emulator.run_ids())
        once = await s.ok("continue_run", runId=previous, prompt="Add a regression test.")
        again = await s.ok("continue_run", runId=previous, prompt="Add a regression test.")
        assert again["run"]["runId"] == once["run"]["runId"] and again["replayed"] is True
        assert again["idempotencyKey"] == once["idempotencyKey"]
        assert "Replayed" in again["summary"]
        assert len(s.emulator.emulator.run_ids()) == runs_before + 1


@pytest.mark.parametrize("mode", MODES)
async def test_active_runs_are_refused_with_nothing_sent(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        running = (await s.start("Keep going [scenario:endless]"))["run"]["runId"]
        asking = (await s.start("Ask me [scenario:awaiting_input]"))["run"]["runId"]
        waited = await s.ok("wait_for_runs", runIds=[asking], timeoutSeconds=30)
        assert waited["needsInput"] == [asking]
        posts = s.emulator.emulator.request_count("POST")
        still = await s.error("continue_run", runId=running, prompt="More.")
        assert "still" in still and "wait for it" in still and "cancel" in still
        needs = await s.error("continue_run", runId=asking, prompt="More.")
        assert "needs a person's input in Mogplex" in needs
        assert "UUID" in await s.error("continue_run", runId="not-a-run", prompt="More.")
        assert s.emulator.emulator.request_count("POST") == posts, "a refused follow-up sends no POST"


async def test_a_run_on_the_mogplex_harness_is_continued_on_it(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", config=EmulatorConfig(speed=50.0, event_style="newer")) as s:
        async with httpx2.AsyncClient(base_url=s.emulator.base_url) as http:  # started elsewhere (e.g. the UI)
            answer = await http.post(
                "/api/v1/mogplex/runs",
                json={"repoId": REPO_WEB, "prompt": "Elsewhere [scenario:success]", "harness": "mogplex"},
                headers={"Authorization": f"Bearer {s.emulator.token}", "Idempotency-Key": "from-the-ui"},
            )
        run_id = answer.json()["data"]["runId"]
        for _ in range(20):
            if (await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10))["finished"]:
                break
        got = await s.ok("get_run", runId=run_id)
        assert got["run"]["harness"] == "mogplex"
        follow_up = await s.ok("continue_run", runId=run_id, prompt="Tidy up.")
        assert follow_up["run"]["harness"] == "mogplex"
        assert _sent(s, follow_up["idempotencyKey"])["harness"] == "mogplex"
