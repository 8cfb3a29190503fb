"""Every tool's happy path through a real MCP client, in both protocol eras and both upstream flavours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

FLAVORS = ("documented", "observed")


@pytest.mark.parametrize("mode", MODES)
async def test_list_repos_gives_ids_a_model_can_start_on(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        everything = await s.ok("list_repos")
        assert everything["count"] == len(everything["repos"]) >= 2
        assert all(repo["id"] and repo["fullName"] for repo in everything["repos"])
        first = everything["repos"][0]["fullName"]
        matching = await s.ok("list_repos", query=first.split("/")[1].upper(), limit=5)
        assert [repo["fullName"] for repo in matching["repos"]] == [first]
        nothing = await s.ok("list_repos", query="no-such-repo-anywhere")
        assert nothing["repos"] == [] and "No repositories matching" in nothing["summary"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavor", FLAVORS)
async def test_start_wait_and_read_a_successful_run(tmp_path: Path, mode: Mode, flavor: str) -> None:
    config = EmulatorConfig(flavor=flavor, speed=10.0)  # type: ignore[arg-type]  # still running when the wait begins, even on a loaded machine
    async with session(tmp_path, mode, config=config) as s:
        started = await s.start("Refactor auth to bearer tokens [scenario:success]", createBranch=True)
        run_id = started["run"]["runId"]
        assert started["replayed"] is False and started["idempotencyKey"]
        assert started["run"]["status"] in ("pending", "streaming")
        assert "wait_for_run" in " ".join(started["nextSteps"])

        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        finished = None
        for _ in range(20):
            result = await s.client.call_tool(
                "wait_for_run", {"runId": run_id, "timeoutSeconds": 5}, progress_callback=on_progress
            )
            assert not result.is_error
            finished = result.structured_content
            assert finished is not None
            if finished["finished"]:
                break
        assert finished is not None and finished["finished"] is True
        assert finished["run"]["status"] == "success"
        assert finished["run"]["pullRequestUrl"].startswith("https://")
        assert finished["run"]["pullRequestUrl"] in finished["summary"]
        assert messages, "wait_for_run sent no progress notifications"

        before = s.emulator.emulator.request_count()
        got = await s.ok("get_run", runId=run_id)
        assert s.emulator.emulator.request_count() == before, "a finished, followed run costs no upstream call"
        assert got["run"]["terminal"] is True and got["run"]["codeChanged"] is True
        assert got["run"]["pullRequestUrl"] == finished["run"]["pullRequestUrl"]

        events = await s.ok("list_run_events", runId=run_id, limit=3)
        assert len(events["events"]) == 3 and events["hasMore"] is True
        rest = await s.ok("list_run_events", runId=run_id, afterEventId=events["nextCursor"], limit=200)
        ids = [e["id"] for e in events["events"] + rest["events"]]
        assert len(ids) == len(set(ids)), "paging repeated an event"
        assert rest["hasMore"] is False and rest["terminal"] is True


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavor", FLAVORS)
async def test_cancel_a_running_run_then_cancel_again(tmp_path: Path, mode: Mode, flavor: str) -> None:
    async with session(tmp_path, mode, config=EmulatorConfig(flavor=flavor, speed=40.0)) as s:  # type: ignore[arg-type]
        run_id = (await s.start("Keep going [scenario:endless]"))["run"]["runId"]
        first = await s.ok("cancel_run", runId=run_id)
        assert first["outcome"] == "cancellation_requested"
        waited = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        assert waited["finished"] is True and waited["run"]["status"] == "cancelled"
        second = await s.ok("cancel_run", runId=run_id)
        assert second["outcome"] == "already_terminal"
        assert "nothing was cancelled" in second["summary"]


@pytest.mark.parametrize("mode", MODES)
async def test_wait_returns_within_its_bound_when_the_run_never_ends(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        run_id = (await s.start("Never stop [scenario:endless]"))["run"]["runId"]
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        result = await s.client.call_tool(
            "wait_for_run", {"runId": run_id, "timeoutSeconds": 1.5}, progress_callback=on_progress
        )
        waited = result.structured_content
        assert waited is not None and not result.is_error
        assert waited["finished"] is False
        assert waited["waitedSeconds"] >= 1.4, "it waited out its timeout rather than giving up early"
        assert "call wait_for_run again" in waited["nextSteps"][0]
        assert seen, "no progress notification while the run was going"
        assert seen == sorted(seen) and len(set(seen)) == len(seen), "progress must increase"


@pytest.mark.parametrize("mode", MODES)
async def test_two_hundred_events_stay_inside_the_result_budget(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, config=EmulatorConfig(speed=1000.0)) as s:
        run_id = (await s.start("Big job [scenario:long]"))["run"]["runId"]
        await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        result = await s.call("list_run_events", runId=run_id, limit=200, includePayload=True)
        assert not result.is_error and result.structured_content is not None
        body = result.structured_content
        assert len(json.dumps(body)) <= 16_000
        assert body["events"], "no events shown"
        assert body["hasMore"] is True and body["nextCursor"] == body["events"][-1]["id"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_200_event_window_is_reported_honestly(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, config=EmulatorConfig(speed=1000.0)) as s:
        run_id = (await s.start("Big job [scenario:long]"))["run"]["runId"]
        await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
        cursor = None
        pages = 0
        while True:
            args = {"runId": run_id, "limit": 200} | ({"afterEventId": cursor} if cursor else {})
            page = await s.ok("list_run_events", **args)
            pages += 1
            cursor = page["nextCursor"]
            if not page["hasMore"]:
                break
            assert pages < 50
        assert page["windowExhausted"] is True
        assert "first 200 events" in page["summary"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_prompt_walks_a_model_through_delegation(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        prompts = await s.client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["delegate_task", "delegate_tasks"]
        got = await s.client.get_prompt("delegate_task", {"repo": "acme/api", "task": "Add rate limiting"})
        text = got.messages[0].content.text  # type: ignore[union-attr]
        for step in ("list_repos", "start_run", "wait_for_run", "pull request"):
            assert step in text
        assert "acme/api" in text and "Add rate limiting" in text

        many = await s.client.get_prompt(
            "delegate_tasks", {"repos": "acme/api, acme/web", "tasks": "Add rate limiting\n\nFix the login page"}
        )
        fanned = many.messages[0].content.text  # type: ignore[union-attr]
        for step in ("start_run", "wait_for_runs", '"any"', "needsInput", "continue_run", "pullRequestUrl"):
            assert step in fanned
        assert "- Add rate limiting\n- Fix the login page" in fanned


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_without_its_arguments_is_invalid_params_naming_them(
    tmp_path: Path, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    async with session(tmp_path, mode) as s:
        with pytest.raises(MCPError) as missing:
            await s.client.get_prompt("delegate_task", {})
        assert missing.value.code == -32602 and "repo" in missing.value.message and "task" in missing.value.message
        with pytest.raises(MCPError) as half:
            await s.client.get_prompt("delegate_task", {"repo": "acme/api"})
        assert half.value.code == -32602 and "task" in half.value.message and "repo," not in half.value.message
        with pytest.raises(MCPError) as oversized:
            await s.client.get_prompt("delegate_task", {"repo": "acme/api", "task": "x" * 20_001})
        assert oversized.value.code == -32602 and "task" in oversized.value.message
        assert "x" * 100 not in oversized.value.message, "the rejected value was echoed"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged for a caller's mistake"


@pytest.mark.parametrize("mode", MODES)
async def test_instructions_teach_the_workflow(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        instructions = s.client.instructions or ""
        order = [instructions.index(name) for name in ("list_repos", "start_run", "wait_for_run", "cancel_run")]
        assert order == sorted(order)


@pytest.mark.parametrize("mode", MODES)
async def test_empty_optional_fields_count_as_left_out(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        started = await s.start("Tidy the README", baseBranch="", workingBranch=" ", rootDirectory="", mode="")
        assert started["run"]["status"] in ("pending", "streaming")
        assert started["run"]["baseBranch"], "the service's default branch applies"


@pytest.mark.parametrize("mode", MODES)
async def test_a_long_repository_list_is_cut_to_the_budget_and_says_so(tmp_path: Path, mode: Mode) -> None:
    repos = [
        {
            "id": f"00000000-0000-4000-8000-{index:012d}",
            "full_name": f"acme-corporation-with-a-long-name/service-number-{index:03d}-of-the-monorepo",
            "installation_id": 1,
            "default_branch": "main",
            "root_directory": None,
        }
        for index in range(200)
    ]
    async with session(tmp_path, mode, config=EmulatorConfig(repos=repos)) as s:
        result = await s.ok("list_repos", limit=200)
        assert len(json.dumps(result)) <= 16_000
        assert 0 < len(result["repos"]) < 200
        assert "Showing the first" in result["summary"] and "200 repositories" in result["summary"]
        assert "query" in result["nextSteps"][0]


@pytest.mark.parametrize("mode", MODES)
async def test_a_cold_read_of_a_finished_long_run_reaches_every_event_through_the_stream(
    tmp_path: Path, mode: Mode
) -> None:
    async with running_emulator(EmulatorConfig(flavor="observed", speed=1000.0)) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            run_id = (await s.start("Big job [scenario:long]"))["run"]["runId"]
            assert (await s.ok("wait_for_run", runId=run_id, timeoutSeconds=20))["finished"] is True
        async with session(tmp_path / "fresh", mode, emulator=emu) as s:  # no follower knows the run
            seen: list[str] = []
            cursor = None
            for _ in range(40):
                args = {"runId": run_id, "limit": 200} | ({"afterEventId": cursor} if cursor else {})
                page = await s.ok("list_run_events", **args)
                seen += [event["id"] for event in page["events"]]
                cursor = page["nextCursor"]
                if not page["hasMore"]:
                    break
            assert len(seen) == len(set(seen)) > 200
            assert page["windowExhausted"] is False
