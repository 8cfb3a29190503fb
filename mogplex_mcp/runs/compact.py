"""Compact views of a run's events: a tool's start and finish as one line, consecutive deltas as one message.

Newer service code tells each tool use as `tool_started` + `tool_finished` (same `toolCallId`) and streams
the agent's words as many `log` events with `payload.kind: "assistant_delta"`. Transcripts, progress lines
and wait results show them coalesced; every line says how many raw events it stands for, so counts stay
honest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mogplex_mcp.api.models import RunEvent

FAILED_TOOL_STATES = frozenset({"error", "failed", "failure", "denied", "cancelled", "canceled", "rejected"})
LineKind = Literal["event", "tool", "message"]


def is_assistant_delta(event: RunEvent) -> bool:
    return event.type == "log" and event.payload.get("kind") == "assistant_delta"


def tool_call_key(event: RunEvent) -> str:
    """What pairs a tool's start with its finish: the toolCallId, else (older events) the tool's name."""
    call_id = event.payload.get("toolCallId") or event.payload.get("tool_call_id")
    return f"id:{call_id}" if isinstance(call_id, str) and call_id else f"name:{event.tool_name or ''}"


def tool_state(event: RunEvent) -> str:
    """A finished tool's outcome: its `state`, else `ok`, else "finished"."""
    state = event.payload.get("state")
    if isinstance(state, str) and state:
        return state[:40]
    ok = event.payload.get("ok")
    return "finished" if not isinstance(ok, bool) else ("completed" if ok else "error")


def tool_failed(event: RunEvent) -> bool:
    return event.payload.get("ok") is False or tool_state(event).lower() in FAILED_TOOL_STATES


@dataclass
class CompactLine:
    """One line of a compact view; `count` raw events stand behind it (first .. last)."""

    kind: LineKind
    first: RunEvent
    last: RunEvent
    count: int = 1
    state: str | None = None  # a tool's: "running" until its finish is seen
    text: str = ""  # a message's words, joined

    @property
    def tool_name(self) -> str | None:
        return self.first.tool_name or self.last.tool_name


def compact(events: Iterable[RunEvent]) -> list[CompactLine]:
    """The events as compact lines, oldest first."""
    lines: list[CompactLine] = []
    open_tools: dict[str, CompactLine] = {}
    for event in events:
        previous = lines[-1] if lines else None
        if is_assistant_delta(event):
            if previous is not None and previous.kind == "message" and is_assistant_delta(previous.last):
                previous.last, previous.count, previous.text = (
                    event,
                    previous.count + 1,
                    previous.text + (event.message or ""),
                )
            else:
                lines.append(CompactLine("message", event, event, text=event.message or ""))
        elif event.type == "tool_started":
            line = CompactLine("tool", event, event, state="running")
            open_tools[tool_call_key(event)] = line
            lines.append(line)
        elif event.type == "tool_finished":
            started = open_tools.pop(tool_call_key(event), None)
            if started is None:
                lines.append(CompactLine("tool", event, event, state=tool_state(event)))
            else:
                # The joined line moves to where the tool finished: lines stay in the order of their last
                # events, so a line's id (its last event's) is a cursor no earlier line reaches past.
                lines.remove(started)
                started.last, started.count, started.state = event, started.count + 1, tool_state(event)
                lines.append(started)
        else:
            lines.append(CompactLine("event", event, event))
    return lines


def line_text(line: CompactLine) -> str:
    """What a person reads for a line (raw: callers clean and shorten it)."""
    if line.kind == "message":
        return f"assistant · {' '.join(line.text.split())}" + (f" ({line.count} parts)" if line.count > 1 else "")
    if line.kind == "tool":
        path = line.first.payload.get("path")
        where = f" · {path[:200]}" if isinstance(path, str) and path else ""
        return f"tool · {line.tool_name or '?'} · {line.state or 'finished'}{where}"
    parts = [line.first.type]
    if line.first.tool_name:
        parts.append(line.first.tool_name)
    if line.first.message:
        parts.append(line.first.message)
    return " · ".join(parts)


class ProgressCompactor:
    """Progress lines for events as they arrive in batches, each tool use and each message told once.

    A tool whose start was told in an earlier batch is told again only if it failed; a message that
    continues across batches is told when it starts.
    """

    def __init__(self) -> None:
        self._told_tools: set[str] = set()
        self._in_message = False

    def lines(self, fresh: list[RunEvent]) -> list[str]:
        told: list[str] = []
        for index, line in enumerate(compact(fresh)):
            if line.kind == "message" and index == 0 and self._in_message:
                continue
            key = tool_call_key(line.first)
            if line.kind == "tool" and line.first.type == "tool_finished" and key in self._told_tools:
                self._told_tools.discard(key)
                if not tool_failed(line.last):
                    continue
            if line.kind == "tool" and line.state == "running":
                self._told_tools.add(key)
            told.append(line_text(line))
        if fresh:
            self._in_message = is_assistant_delta(fresh[-1])
        return told
