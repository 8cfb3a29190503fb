"""Compaction costs what it shows: linear in the events, kept with the follower, never quadratic (issue 23, #1).

Timing is compared as a ratio of CPU times within one run (4x the events must cost about 4x, not 16x), never
against a wall-clock bound; the absolute numbers are in bench/ (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.compact import compact, line_text
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.server.compact_views import compact_event_views, transcript_lines, transcript_tail


def _event(n: int, type_: str, tool: str | None = None, message: str | None = None, **payload: Any) -> RunEvent:
    return RunEvent.model_validate(
        {"id": f"e{n}", "type": type_, "toolName": tool, "message": message, "payload": payload}
    )


def tool_calls(count: int) -> list[RunEvent]:
    """`count` tool uses, each told as a start and a finish (newer service code), finishing in order."""
    events: list[RunEvent] = []
    for n in range(count):
        events.append(_event(2 * n, "tool_started", "read_file", toolCallId=f"c{n}", path=f"f{n}.py"))
        events.append(_event(2 * n + 1, "tool_finished", "read_file", toolCallId=f"c{n}", state="completed"))
    return events


def deltas(count: int, size: int = 2048, first: int = 0) -> list[RunEvent]:
    text = "x" * (size - 1) + " "
    return [_event(n, "log", message=text, kind="assistant_delta") for n in range(first, first + count)]


def cpu_seconds(work: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return max(best, 1e-4)


def test_compacting_tool_calls_is_linear() -> None:
    small, large = tool_calls(400), tool_calls(1600)
    ratio = cpu_seconds(lambda: compact(large)) / cpu_seconds(lambda: compact(small))
    assert ratio < 8, f"4x the tool calls cost {ratio:.1f}x the CPU (linear: ~4x; quadratic: ~16x)"


def test_compacting_long_streamed_messages_is_linear() -> None:
    small, large = deltas(400), deltas(1600)
    ratio = cpu_seconds(lambda: compact(large), 2) / cpu_seconds(lambda: compact(small), 2)
    assert ratio < 8, f"4x the 2 KB deltas cost {ratio:.1f}x the CPU (linear: ~4x; quadratic: ~16x)"
    (line,) = compact(large)
    assert line.count == 1600 and line.text_chars == 1600 * 2048, "every delta is counted, however long"
    assert line_text(line).endswith("(1600 parts)")


def test_the_follower_keeps_the_compact_view_as_events_arrive() -> None:
    """What a follower kept, batch by batch, is exactly what compacting all its events gives."""
    follower = RunFollower("run", "fp", max_events=5_000)
    events = tool_calls(300) + deltas(50, 64, first=5_000) + [_event(10_000, "finished", message="done")]
    for start in range(0, len(events), 37):
        follower.add_events(events[start : start + 37])
    kept = [(line.kind, line.first.id, line.last.id, line.count) for line in follower.compactor.lines()]
    fresh = [(line.kind, line.first.id, line.last.id, line.count) for line in compact(follower.events())]
    assert kept == fresh
    assert follower.position_after("e599") == 600 and follower.events_from(600)[0].id == "e5000"


def test_a_view_of_a_long_run_costs_what_it_shows() -> None:
    """Twenty views or a transcript's tail from a follower's kept lines: the run's length does not matter."""
    short, long = RunFollower("a", "fp", 20_000), RunFollower("b", "fp", 20_000)
    short.add_events(tool_calls(250))
    long.add_events(tool_calls(4_000))

    def views(follower: RunFollower) -> Callable[[], object]:
        return lambda: compact_event_views([], "mog_secret", 20, lines=follower.compactor.lines())

    def tail(follower: RunFollower) -> Callable[[], object]:
        return lambda: transcript_tail(follower.compactor.lines(), "mog_secret", 4_000)

    assert cpu_seconds(views(long), 5) / cpu_seconds(views(short), 5) < 4, "20 views of 8,000 events vs 500"
    tail(long)()  # rendered once; a re-read renders nothing again
    assert cpu_seconds(tail(long), 5) / cpu_seconds(tail(short), 5) < 4, "a transcript tail of 8,000 vs 500"
    everything = transcript_lines(long.events(), "mog_secret")
    assert transcript_tail(long.compactor.lines(), "mog_secret", 10**9) == everything


def test_dropped_events_take_their_lines_with_them() -> None:
    follower = RunFollower("run", "fp", max_events=100)
    follower.add_events(tool_calls(500))
    assert follower.event_count == 100 and follower.dropped_events == 900
    assert len(follower.compactor) == 50, "the lines of events no longer kept are forgotten too"
    assert follower.position_after("e999") == 100 and follower.position_after("e0") is None
