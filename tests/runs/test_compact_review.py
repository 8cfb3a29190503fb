"""Compact event views and review facts, on event sequences shaped like the service's (both eras of it)."""

from __future__ import annotations

from typing import Any

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.compact import ProgressCompactor, compact, line_text
from mogplex_mcp.runs.review import changed_files, final_message


def _event(n: int, type_: str, tool: str | None = None, message: str | None = None, **payload: Any) -> RunEvent:
    return RunEvent.model_validate(
        {"id": f"e{n}", "type": type_, "toolName": tool, "message": message, "payload": payload}
    )


def _delta(n: int, text: str) -> RunEvent:
    return _event(n, "log", message=text, kind="assistant_delta")


NEWER = [
    _delta(1, "Let me "),
    _delta(2, "look."),
    _event(3, "tool_started", "edit_file", kind="tool", toolCallId="c1", state="running", path="a.py"),
    _event(4, "tool_started", "edit_file", kind="tool", toolCallId="c2", state="running", path="b.py"),
    _event(5, "tool_finished", "edit_file", kind="tool", toolCallId="c2", state="denied"),
    _event(6, "tool_finished", "edit_file", kind="tool", toolCallId="c1", state="completed"),
    _delta(7, "Done: "),
    _delta(8, "a.py changed."),
    _event(9, "finished", message="Agent exited with code 0", exit_code=0),
]


def test_a_tool_start_and_finish_share_a_line_and_deltas_form_one_message() -> None:
    lines = compact(NEWER)
    assert [line.kind for line in lines] == ["message", "tool", "tool", "message", "event"]
    assert sum(line.count for line in lines) == len(NEWER), "every event is behind exactly one line"
    # A joined tool line stands where the tool finished: lines keep the order of their last events (cursors).
    assert [line.state for line in lines if line.kind == "tool"] == ["denied", "completed"]
    assert [line.last.id for line in lines] == ["e2", "e5", "e6", "e8", "e9"]
    assert line_text(lines[0]) == "assistant · Let me look. (2 parts)"
    assert line_text(lines[2]) == "tool · edit_file · completed · a.py"


def test_changed_files_skip_failed_tools_and_count_every_path() -> None:
    assert changed_files(NEWER) == (["a.py"], 1)
    classic = [_event(n, "tool_call", "edit_file", path=f"f{n}.py", ok=n != 3) for n in range(30)]
    paths, total = changed_files(classic, cap=5)
    assert paths == ["f0.py", "f1.py", "f2.py", "f4.py", "f5.py"] and total == 29
    observed = [_event(1, "tool_started", "write_file", path="x.md"), _event(2, "tool_finished", "write_file", ok=True)]
    assert changed_files(observed) == (["x.md"], 1), "older events pair by tool name"
    assert changed_files([_event(1, "tool_call", "read_file", path="r.py")]) == ([], 0)


def test_the_final_message_is_the_last_run_of_deltas_cut_short() -> None:
    assert final_message(NEWER) == "Done: a.py changed."
    assert final_message([_event(1, "log", message="plain log")]) is None
    long = [_delta(n, "word ") for n in range(500)]
    text = final_message(long, limit=50)
    assert text is not None and len(text) == 50 and text.endswith("…")


def test_progress_tells_each_tool_use_and_message_once_across_batches() -> None:
    progress = ProgressCompactor()
    first = progress.lines(NEWER[:3])  # the message, and edit_file c1 started
    second = progress.lines(NEWER[3:6])  # c2 started and denied; c1's finish (already told, succeeded)
    third = progress.lines([*NEWER[6:7]])
    fourth = progress.lines([*NEWER[7:8]])  # the same message continuing
    assert first == ["assistant · Let me look. (2 parts)", "tool · edit_file · running · a.py"]
    assert second == ["tool · edit_file · denied · b.py"]
    assert third == ["assistant · Done:"] and fourth == []
