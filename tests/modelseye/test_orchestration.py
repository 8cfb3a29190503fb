"""Orchestration flows, driven the way a lead agent drives them, in both protocol eras.

A fan-out over two repositories (a success, a run that asks a person, a failure) waited on with wait_for_runs
the way its nextSteps say; a bad id among good ones; a follow-up on the pull request's branch; list_runs after
get_run, after resource reads, after a restart and on another replica. Every run of every answer is held
against what the emulator knows happened (`Truth`); a row may say "unknown" or "unconfirmed", never something
false.
"""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import TextResourceContents

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, ManualClock, running_emulator
from mogplex_mcp.server.app import create_server
from tests.modelseye.support import Truth, check_compact_run, check_listed
from tests.redis_server import RedisServer
from tests.server.harness import FAST_FOLLOW, MODES, Mode, Session, session, settings_for
from tests.server.test_shared_pacer import fresh_database

pytestmark = pytest.mark.anyio

FLOW_LIMIT = 90.0
SCENARIOS = {"success": "acme/api", "awaiting_input": "acme/web", "failure": "acme/api"}


def truths(emu: EmulatorHandle, run_ids: list[str]) -> dict[str, Truth]:
    return {run_id: Truth.of(emu, run_id) for run_id in run_ids}


async def fan_out(s: Session) -> dict[str, str]:
    """One run per scenario, on the repository the scenario names: scenario -> runId."""
    repos = {repo["fullName"]: repo["id"] for repo in (await s.ok("list_repos"))["repos"]}
    started: dict[str, str] = {}
    for scenario, repo in SCENARIOS.items():
        run = await s.ok("start_run", repoId=repos[repo], prompt=f"Task [scenario:{scenario}]", createBranch=True)
        started[scenario] = run["run"]["runId"]
    return started


def check_wait(where: str, waited: dict[str, Any], emu: EmulatorHandle, asked: list[str]) -> list[str]:
    """A wait_for_runs answer: each run, the sets it files runs under, the steps; returns what to wait on next."""
    truth = truths(emu, [run["runId"] for run in waited["runs"] if run["status"] is not None])
    for run in waited["runs"]:
        if run["runId"] in truth:
            check_compact_run(f"{where} {run['runId'][:8]}", run, truth[run["runId"]])
    for run_id in waited["finished"]:
        assert truth[run_id].terminal, f"{where}: {run_id} filed as finished"
    for run_id in waited["needsInput"]:
        assert truth[run_id].status == "awaiting_input", f"{where}: {run_id} filed as needing input"
    steps = " ".join(waited["nextSteps"])
    if waited["needsInput"]:
        assert "pendingQuestion" in steps and "Mogplex" in steps, f"{where}: {waited['nextSteps']}"
    if waited["stillRunning"]:
        assert all(run_id in steps for run_id in waited["stillRunning"]), f"{where}: {waited['nextSteps']}"
    assert not (set(waited["stillRunning"]) & set(asked)), f"{where}: a run that asks is not 'still running'"
    still: list[str] = waited["stillRunning"]
    return still


@pytest.mark.parametrize("mode", MODES)
async def test_a_fan_out_is_reported_truthfully_to_the_end(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu, session(tmp_path, mode, emulator=emu) as s:
        with anyio.fail_after(FLOW_LIMIT):
            started = await fan_out(s)
            pending = list(started.values())
            asked: list[str] = []
            for turn in range(30):  # as the prompt says: wait on what is still running, mode any
                waited = await s.ok("wait_for_runs", runIds=pending, timeoutSeconds=10)
                asked += waited["needsInput"]
                pending = check_wait(f"wait #{turn}", waited, emu, asked)
                if not pending:
                    break
            assert not pending and asked == [started["awaiting_input"]]

            # A bad id among good ones: reported with the fixing call; the good ones are answered truthfully.
            missing = str(uuid.uuid4())
            mixed = await s.ok("wait_for_runs", runIds=[started["success"], missing, started["awaiting_input"]])
            check_wait("mixed", mixed, emu, asked)
            assert mixed["unreadable"] == [missing] and "list_runs" in " ".join(mixed["nextSteps"])
            assert mixed["done"] is True and started["success"] in mixed["finished"]

            run_ids = list(started.values())
            for status in ("all", "active", "finished"):
                listed = await s.ok("list_runs", status=status)
                check_listed(f"list_runs {status}", listed, truths(emu, run_ids), status)
            active = await s.ok("list_runs", status="active")
            assert [run["runId"] for run in active["runs"]] == [started["awaiting_input"]]

            # A follow-up on the pull request's branch says it updates that pull request.
            pull_request = Truth.of(emu, started["success"]).pull_request_url
            assert pull_request is not None
            follow_up = await s.ok("continue_run", runId=started["success"], prompt="Now the docs.")
            assert f"updates the existing pull request #{pull_request.rsplit('/', 1)[-1]}" in follow_up["summary"]
            assert "createBranch" not in " ".join(follow_up["nextSteps"])
        async with session(tmp_path, mode, emulator=emu) as restarted:
            listed = await restarted.ok("list_runs", limit=10)
            check_listed("list_runs after a restart", listed, truths(emu, run_ids))
            rows = {row["runId"]: row for row in listed["runs"]}
            assert rows[started["success"]]["pullRequestUrl"] == pull_request


@pytest.mark.parametrize("mode", MODES)
async def test_list_runs_agrees_with_whatever_saw_a_run_finish(tmp_path: Path, mode: Mode) -> None:
    """Runs that finished unseen, then looked at by get_run or a resource read: list_runs says what they said."""
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu, session(tmp_path, mode, emulator=emu) as s:
        started = await fan_out(s)
        run_ids = list(started.values())
        clock.advance(600)
        before = await s.ok("list_runs", status="active")
        check_listed("list_runs active before any look", before, truths(emu, run_ids), "active")
        got = await s.ok("get_run", runId=started["success"])
        contents = (await s.client.read_resource(f"mogplex://runs/{started['failure']}")).contents[0]
        assert isinstance(contents, TextResourceContents)
        document = json.loads(contents.text)
        asking = await s.ok("get_run", runId=started["awaiting_input"])
        for where, run_id, answer in (
            ("get_run", started["success"], got["run"]),
            ("resource", started["failure"], document["run"]),
            ("get_run asking", started["awaiting_input"], asking["run"]),
        ):
            truth = Truth.of(emu, run_id)
            assert answer["status"] == truth.status, where
            row = {row["runId"]: row for row in (await s.ok("list_runs"))["runs"]}[run_id]
            check_compact_run(f"list_runs after {where}", row, truth)
            assert row["pullRequestUrl"] == answer["pullRequestUrl"] and row["delivered"] == answer["delivered"]


@pytest.mark.parametrize("mode", MODES)
async def test_list_runs_on_another_replica_agrees_with_what_one_replica_saw(
    tmp_path: Path, redis_server: RedisServer, mode: Mode
) -> None:
    redis_url = await fresh_database(redis_server, 11 if mode == "legacy" else 12)
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu, AsyncExitStack() as stack:
        first, second = [
            await stack.enter_async_context(
                Client(
                    create_server(settings_for(emu, tmp_path / f"r{n}", redis_url=redis_url), follow=FAST_FOLLOW),
                    mode=mode,
                )
            )
            for n in range(2)
        ]
        repo = (await first.call_tool("list_repos", {})).structured_content or {}
        repo_id = repo["repos"][0]["id"]
        started = await first.call_tool(
            "start_run", {"repoId": repo_id, "prompt": "Shared [scenario:success]", "createBranch": True}
        )
        run_id = (started.structured_content or {})["run"]["runId"]
        clock.advance(600)
        seen = (await first.call_tool("get_run", {"runId": run_id})).structured_content or {}
        listed = (await second.call_tool("list_runs", {})).structured_content or {}
    truth = Truth.of(emu, run_id)
    assert seen["run"]["pullRequestUrl"] == truth.pull_request_url
    row = next(row for row in listed["runs"] if row["runId"] == run_id)
    check_compact_run("list_runs on the other replica", row, truth)
    assert row["delivered"] == "pull_request" and row["pullRequestUrl"] == truth.pull_request_url
