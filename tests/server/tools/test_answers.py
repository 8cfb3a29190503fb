"""Answers a lead agent trusts (issue 21): a run's one outcome reaches the runs list from every path that saw
it, and a status filter never files a run under a status it may no longer have.

The emulator runs on a ManualClock, so "finished upstream seconds ago, unseen by this server" is exact.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import TextResourceContents

from mogplex_mcp.emulator import EmulatorConfig, ManualClock, running_emulator
from mogplex_mcp.runs.fingerprints import token_fingerprint
from tests.server.harness import MODES, Mode, Session, session, text_of

pytestmark = pytest.mark.anyio

LATER = 600.0  # simulated seconds: every finite scenario is over by then


@asynccontextmanager
async def on_a_manual_clock(tmp_path: Path, mode: Mode, **overrides: Any) -> AsyncIterator[tuple[Session, ManualClock]]:
    """A session on an emulator whose time moves only when the test says (clock.advance)."""
    clock = ManualClock()
    async with (
        running_emulator(EmulatorConfig(), clock=clock) as emu,
        session(tmp_path, mode, emulator=emu, **overrides) as s,
    ):
        yield s, clock


def _row(listed: dict[str, Any], run_id: str) -> dict[str, Any]:
    rows = {run["runId"]: run for run in [*listed["runs"], *listed.get("unconfirmed", [])]}
    assert run_id in rows, f"{run_id} not listed: {listed['summary']}"
    row: dict[str, Any] = rows[run_id]
    return row


def _assert_pull_request_row(row: dict[str, Any], where: str) -> None:
    assert row["status"] == "success", where
    assert row["delivered"] == "pull_request", f"{where}: delivered {row['delivered']!r}"
    assert row["pullRequestUrl"] and "/pull/" in row["pullRequestUrl"], f"{where}: the pull request was lost"
    assert row["codeChanged"] is True, where
    assert row["changedFilesTotal"] == 2, f"{where}: changedFilesTotal {row['changedFilesTotal']!r}"


async def _read_run_resource(s: Session, run_id: str) -> dict[str, Any]:
    contents = (await s.client.read_resource(f"mogplex://runs/{run_id}")).contents[0]
    assert isinstance(contents, TextResourceContents)
    document: dict[str, Any] = json.loads(contents.text)
    return document


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["get_run", "resource", "cancel_run"])
async def test_a_pull_request_seen_by_any_path_is_in_the_runs_list_and_survives_a_restart(
    tmp_path: Path, mode: Mode, path: str
) -> None:
    clock = ManualClock()
    async with running_emulator(EmulatorConfig(), clock=clock) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            run_id = (await s.start("Ship it [scenario:success]", createBranch=True))["run"]["runId"]
            clock.advance(LATER)  # finished upstream; this server followed nothing
            if path == "get_run":
                seen = (await s.ok("get_run", runId=run_id))["run"]
            elif path == "resource":
                seen = (await _read_run_resource(s, run_id))["run"]
            else:
                seen = (await s.ok("cancel_run", runId=run_id))["run"]
            assert seen["pullRequestUrl"] and seen["delivered"] == "pull_request"
            row = _row(await s.ok("list_runs"), run_id)
            _assert_pull_request_row(row, f"list_runs after {path}")
            assert row["pullRequestUrl"] == seen["pullRequestUrl"]
        async with session(tmp_path, mode, emulator=emu) as restarted:
            before = emu.emulator.request_count()
            row = _row(await restarted.ok("list_runs"), run_id)
            _assert_pull_request_row(row, f"list_runs after {path} and a restart")
            assert row["statusSource"] == "final" and emu.emulator.request_count() == before


async def test_a_finished_run_whose_outcome_nobody_recorded_is_unknown_not_no_pull_request(tmp_path: Path) -> None:
    async with on_a_manual_clock(tmp_path, "auto") as (s, _clock):
        emu = s.emulator
        run_id = (await s.start("Ship it [scenario:success]", createBranch=True))["run"]["runId"]
        # The journal learns the final status alone (as an older version of this server wrote it).
        s.state.journal.remember_run(token_fingerprint(emu.token), run_id, status="success")
        row = _row(await s.ok("list_runs"), run_id)
    assert row["statusSource"] == "final" and row["pullRequestUrl"] is None
    assert row["delivered"] == "unknown", "a null pull request link must not read as 'no pull request'"


@pytest.mark.parametrize("mode", MODES)
async def test_a_status_filter_never_lists_a_run_that_no_longer_matches(tmp_path: Path, mode: Mode) -> None:
    async with on_a_manual_clock(tmp_path, mode) as (s, clock):
        done = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
        endless = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
        clock.advance(LATER)  # `done` finished upstream seconds ago; the journal still says pending
        active = await s.ok("list_runs", status="active")
        assert [run["runId"] for run in active["runs"]] == [endless], active["summary"]
        assert active["runs"][0]["statusSource"] == "refreshed"
        assert "no longer" in active["summary"]
        finished = await s.ok("list_runs", status="finished")
        assert [run["runId"] for run in finished["runs"]] == [done]
        assert finished["runs"][0]["delivered"] == "pull_request"


async def test_a_filtered_row_that_cannot_be_refreshed_is_unconfirmed_with_its_age(tmp_path: Path) -> None:
    async with on_a_manual_clock(tmp_path, "auto", list_refresh_max=0) as (s, clock):
        emu = s.emulator
        done = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
        endless = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
        clock.advance(LATER)
        before = emu.emulator.request_count()
        active = await s.ok("list_runs", status="active")
        finished = await s.ok("list_runs", status="finished")
        assert emu.emulator.request_count() == before, "no budget: nothing is read upstream"
    assert finished["runs"] == [] and "No finished runs" not in finished["summary"], finished["summary"]
    assert "2 run(s) last seen active could not be checked" in finished["summary"], finished["summary"]
    assert active["runs"] == [] and active["count"] == 0, "unconfirmed rows are not filed under 'active'"
    assert {run["runId"] for run in active["unconfirmed"]} == {done, endless}
    assert all(
        run["statusSource"] == "remembered" and run["statusAgeSeconds"] is not None for run in active["unconfirmed"]
    )
    assert "could not be checked" in active["summary"] and "unconfirmed" in active["summary"]
    assert "No active runs" not in active["summary"]


@pytest.mark.parametrize("mode", MODES)
async def test_one_unreadable_id_is_reported_and_the_wait_goes_on_for_the_others(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        good = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
        missing = str(uuid.uuid4())  # well-formed, but no such run
        waited = await s.ok("wait_for_runs", runIds=[good, missing], mode="all", timeoutSeconds=30)
    by_id = {run["runId"]: run for run in waited["runs"]}
    assert waited["finished"] == [good], "the good run was waited on to its end"
    assert by_id[good]["status"] == "success" and by_id[good]["pullRequestUrl"]
    assert waited["unreadable"] == [missing] and missing not in waited["stillRunning"]
    reason = by_id[missing]["unreadableReason"]
    assert "not found" in reason and by_id[missing]["error"] is None, "error means the run failed, as in get_run"
    steps = " ".join(waited["nextSteps"])
    assert missing in steps and "list_runs" in steps, waited["nextSteps"]
    assert "1 finished" in waited["summary"] and "could not be read" in waited["summary"]
    assert "Timeout" not in waited["summary"]


async def test_a_bad_id_does_not_end_the_wait_for_a_running_run(tmp_path: Path) -> None:
    async with session(tmp_path, "auto") as s:
        running = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
        waited = await s.ok("wait_for_runs", runIds=[running, str(uuid.uuid4())], timeoutSeconds=2)
    assert waited["done"] is False and waited["waitedSeconds"] >= 1.5, "the wait went on for the running run"
    assert waited["stillRunning"] == [running]
    assert {run["runId"]: run for run in waited["runs"]}[running]["status"] == "streaming"
    assert any(f"wait_for_runs again with only the runs still running: {running}" in s for s in waited["nextSteps"])


@pytest.mark.parametrize("mode", MODES)
async def test_a_follow_up_says_it_updates_the_pull_request_and_never_advises_undoing_it(
    tmp_path: Path, mode: Mode
) -> None:
    async with on_a_manual_clock(tmp_path, mode) as (s, clock):
        first = await s.start("Ship it [scenario:success]", createBranch=True)
        clock.advance(LATER)
        finished = (await s.ok("get_run", runId=first["run"]["runId"]))["run"]
        follow_up = await s.ok("continue_run", runId=first["run"]["runId"], prompt="Now the docs [scenario:endless]")
    url, branch = finished["pullRequestUrl"], finished["workingBranch"]
    number = url.rsplit("/", 1)[-1]
    summary, steps = follow_up["summary"], " ".join(follow_up["nextSteps"])
    assert follow_up["run"]["baseBranch"] == branch and follow_up["run"]["workingBranch"] == branch
    assert f"commits onto {branch}" in summary and f"updates the existing pull request #{number}" in summary, summary
    assert "straight onto the base branch" not in summary, summary
    assert "cancel it" not in steps and "createBranch" not in steps, steps


@pytest.mark.parametrize("mode", MODES)
async def test_the_question_a_run_waits_on_is_shown_with_where_to_answer_it(tmp_path: Path, mode: Mode) -> None:
    async with on_a_manual_clock(tmp_path, mode) as (s, clock):
        run_id = (await s.start("Change the API [scenario:awaiting_input]"))["run"]["runId"]
        clock.advance(LATER)
        got = await s.ok("get_run", runId=run_id)
        waited = await s.ok("wait_for_runs", runIds=[run_id], timeoutSeconds=5)
        listed = await s.ok("list_runs")
        prompt = await s.client.get_prompt("delegate_tasks", {"repos": "acme/api", "tasks": "one\ntwo"})
    origin = s.emulator.base_url.split("/api/")[0].rstrip("/")
    answers = {"get_run": got["run"], "wait_for_runs": waited["runs"][0], "list_runs": _row(listed, run_id)}
    for where, run in answers.items():
        assert run["status"] == "awaiting_input", where
        assert run["pendingQuestion"] == "Keep the old endpoint?", f"{where}: {run.get('pendingQuestion')!r}"
        assert run["mogplexUrl"] and origin.startswith(run["mogplexUrl"]), f"{where}: {run.get('mogplexUrl')!r}"
    assert "pendingQuestion" in got["summary"] and "mogplexUrl" in got["summary"]
    assert any("pendingQuestion" in step for step in [*got["nextSteps"], *waited["nextSteps"]])
    text = " ".join(getattr(message.content, "text", "") for message in prompt.messages)
    assert "pendingQuestion" in text and "(finalMessage)" not in text


@pytest.mark.parametrize("mode", MODES)
async def test_mode_is_what_the_api_documents_and_anything_else_is_refused_before_sending(
    tmp_path: Path, mode: Mode
) -> None:
    async with session(tmp_path, mode) as s:
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        starts = s.emulator.emulator.request_count("POST")
        refused = await s.error("start_run", repoId=repo, prompt="Careful now", mode="careful")
        assert s.emulator.emulator.request_count("POST") == starts, "nothing was sent"
        assert refused.startswith("start_run: invalid arguments: mode") and "Nothing was sent to Mogplex" in refused
        assert all(name in refused for name in ("SAFE", "YOLO", "AUTO")), refused
        started = await s.ok("start_run", repoId=repo, prompt="Careful now", mode="safe")
        entry = s.emulator.emulator.store.key(started["idempotencyKey"])
        assert entry is not None and json.loads(entry.fingerprint)["mode"] == "SAFE", "sent as the API documents it"
        schemas = {tool.name: tool.input_schema for tool in (await s.client.list_tools()).tools}
        assert schemas["start_run"]["properties"]["mode"]["enum"] == ["SAFE", "YOLO", "AUTO"]


async def test_smaller_answers_say_what_happened(tmp_path: Path) -> None:
    async with session(tmp_path, "auto") as s:
        missing = await s.error("get_run", runId=str(uuid.uuid4()))
        assert "list_runs" in missing and "resources/list" not in missing, missing
        repeated = await s.error("wait_for_runs", runIds=[str(uuid.UUID(int=7, version=4))] * 2)
        assert (
            repeated.startswith("wait_for_runs: invalid arguments: runIds") and "Invalid arguments for" not in repeated
        )
        cursor = await s.error("list_runs", cursor="not-a-cursor")
        assert cursor.startswith("list_runs: invalid arguments: cursor"), cursor
        with pytest.raises(MCPError) as prompt_error:
            await s.client.get_prompt("delegate_task", {"repo": "acme/api", "task": "x" * 20_001})
        assert "Nothing was sent" not in str(prompt_error.value) and "task" in str(prompt_error.value)


@pytest.mark.parametrize("mode", MODES)
async def test_a_wait_without_a_cursor_never_shows_old_events_as_new(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        run_id = (await s.start("Never ends [scenario:endless]"))["run"]["runId"]
        first = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=2)
        second = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=2)
    assert first["eventsFrom"] == "runStart" and first["newEvents"], "a first wait shows the run from its start"
    assert "from the run's start" in first["summary"]
    repeated = {e["id"] for e in first["newEvents"]} & {e["id"] for e in second["newEvents"]}
    if mode == "legacy":  # a connection to remember the caller by: only what is new to it
        assert second["eventsFrom"] == "yourLastWait" and not repeated, "events already given came back as new"
    else:  # stateless: nothing to key on, so the result says the events start at the run's start
        assert second["eventsFrom"] == "runStart" and "from the run's start" in second["summary"]


@pytest.mark.parametrize("mode", MODES)
async def test_resource_titles_carry_the_status_with_how_fresh_it_is(tmp_path: Path, mode: Mode) -> None:
    async with on_a_manual_clock(tmp_path, mode) as (s, clock):
        done = (await s.start("Quick one [scenario:success]"))["run"]["runId"]
        clock.advance(LATER)  # finished upstream; this server has not looked since the start
        before = {r.name: r.title or "" for r in (await s.client.list_resources()).resources}
        await s.ok("get_run", runId=done)
        after = {r.name: r.title or "" for r in (await s.client.list_resources()).resources}
        with pytest.raises(MCPError) as bad_cursor:
            await s.client.list_resources(cursor="not-a-cursor")
    stale = before[f"run-{done}"]
    assert "pending as of" in stale and "ago" in stale, f"a remembered status must say how old it is: {stale}"
    assert after[f"run-{done}"].endswith("(success)"), after[f"run-{done}"]
    assert bad_cursor.value.error.code == -32602 and "cursor" in bad_cursor.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_the_text_block_is_the_whole_answer_without_the_pretty_printed_duplicate(
    tmp_path: Path, mode: Mode
) -> None:
    async with on_a_manual_clock(tmp_path, mode) as (s, clock):
        run_id = (await s.start("Ship it [scenario:success]", createBranch=True))["run"]["runId"]
        clock.advance(LATER)
        result = await s.call("wait_for_run", runId=run_id, timeoutSeconds=5)
    structured = result.structured_content
    assert structured is not None and not result.is_error
    text = text_of(result)
    lines = text.splitlines()
    assert lines[0] == structured["summary"] and "Next steps:" in lines
    assert all(f"- {step}" in lines for step in structured["nextSteps"])
    assert f"Note: {structured['untrustedContent']}" in lines, "text-only hosts keep the untrusted-text warning"
    details = json.loads(next(line for line in lines if line.startswith("Details: "))[len("Details: ") :])
    rest = {k: v for k, v in structured.items() if k not in ("summary", "nextSteps", "untrustedContent")}
    assert details == rest, "a host that passes only the text still gets every field"
    assert structured["run"]["pullRequestUrl"] in text
    assert len(text) < 0.85 * len(json.dumps(structured, indent=2)), "no pretty-printed duplicate"
