"""The newer service behaviour through real clients: awaiting_input, tool_started/finished and assistant_delta
shown compactly, changedFiles/finalMessage, and AUTOMATION_REQUIRED."""

from __future__ import annotations

from pathlib import Path

import pytest

from mogplex_mcp.emulator import AUTOMATION_TOKEN, EmulatorConfig
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

NEWER = ("documented", "observed")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavor", NEWER)
async def test_a_run_awaiting_input_ends_the_wait_and_says_a_person_must_answer(
    tmp_path: Path, mode: Mode, flavor: str
) -> None:
    config = EmulatorConfig(speed=50.0, flavor=flavor, event_style="newer")  # type: ignore[arg-type]
    async with session(tmp_path, mode, config=config) as s:
        run_id = (await s.start("Rework the API [scenario:awaiting_input]"))["run"]["runId"]
        waited = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=50)
        assert waited["run"]["status"] == "awaiting_input" and waited["finished"] is False
        assert waited["waitedSeconds"] < 50, "returned when the run began waiting, not at the timeout"
        assert "needs a person's input in Mogplex" in waited["summary"]
        steps = " ".join(waited["nextSteps"])
        assert "Waiting again does not help" in steps and "call wait_for_run again" not in steps
        assert waited["run"]["finalMessage"] == "Should I keep the old endpoint for backward compatibility?"

        both = await s.ok("wait_for_runs", runIds=[run_id], mode="all", timeoutSeconds=50)
        assert both["done"] is True and both["needsInput"] == [run_id] and both["stillRunning"] == []
        assert "need a person's input" in both["summary"]
        got = await s.ok("get_run", runId=run_id)
        assert "needs a person's input in Mogplex" in got["summary"]


@pytest.mark.parametrize("mode", MODES)
async def test_tool_starts_and_finishes_and_streamed_words_are_shown_compactly(tmp_path: Path, mode: Mode) -> None:
    config = EmulatorConfig(speed=40.0, flavor="observed", event_style="newer")
    async with session(tmp_path, mode, config=config) as s:
        run_id = (await s.start("Fix the tests [scenario:success]"))["run"]["runId"]
        messages: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        waited: dict[str, object] = {}
        for _ in range(20):
            result = await s.client.call_tool(
                "wait_for_run", {"runId": run_id, "timeoutSeconds": 10}, progress_callback=on_progress
            )
            waited = result.structured_content or {}
            if waited.get("finished"):
                break
        events = (await s.ok("list_run_events", runId=run_id, limit=200))["events"]
        raw_types = [event["type"] for event in events]
        assert raw_types.count("tool_started") == raw_types.count("tool_finished") == 4

        log = (await s.client.read_resource(f"mogplex://runs/{run_id}/log")).contents[0].text  # type: ignore[union-attr]
        lines = [line for line in log.splitlines() if line[:2].isdigit() or line.startswith("--")]
        assert not any("tool_started" in line or "tool_finished" in line for line in lines)
        assert sum("tool · edit_file · completed" in line for line in lines) == 2
        messages_in_log = [line for line in lines if "assistant ·" in line]
        assert len(messages_in_log) == 2 and "the tests pass now. (3 parts)" in messages_in_log[1]
        assert f"({len(events)} events in {len(lines)} lines" in log

        shown = waited["newEvents"]
        assert isinstance(shown, list) and {"tool", "assistant_message"} <= {event["type"] for event in shown}
        assert waited["newEventCount"] == len(events) > len(shown)
        assert not any("tool_finished" in message for message in messages)
        assert sum("edit_file" in message for message in messages) == 2, "one progress line per tool use"

        run = (await s.ok("get_run", runId=run_id))["run"]
        assert run["changedFiles"] and run["changedFilesTotal"] == len(run["changedFiles"]) == 2
        assert run["finalMessage"].endswith("the tests pass now.")
        assert run["changedFiles"][0] in run["finalMessage"]


@pytest.mark.parametrize("mode", MODES)
async def test_classic_runs_report_changed_files_and_no_final_message(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        run_id = (await s.start("Fix the tests [scenario:success]"))["run"]["runId"]
        for _ in range(20):
            waited = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=10)
            if waited["finished"]:
                break
        assert waited["run"]["changedFilesTotal"] == 2 and waited["run"]["finalMessage"] is None
        document = (await s.client.read_resource(f"mogplex://runs/{run_id}")).contents[0].text  # type: ignore[union-attr]
        assert '"changedFiles"' in document


@pytest.mark.parametrize("mode", MODES)
async def test_an_automation_only_token_is_told_it_cannot_start_runs(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, token=AUTOMATION_TOKEN) as s:
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        message = await s.error("start_run", repoId=repo, prompt="Anything")
        assert "may only run automations" in message and "full-access" in message
        assert AUTOMATION_TOKEN not in message
