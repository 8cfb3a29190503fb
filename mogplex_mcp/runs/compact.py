"""Compact views of a run's events: a tool's start and finish as one line, consecutive deltas as one message.

Newer service code tells each tool use as `tool_started` + `tool_finished` (same `toolCallId`) and streams
the agent's words as many `log` events with `payload.kind: "assistant_delta"`. Transcripts, progress lines
and wait results show them coalesced; every line says how many raw events it stands for, so counts stay
honest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


# A message line keeps this much of its words (views show far less); the rest is only counted, so joining
# thousands of long deltas costs linear time and bounded memory.
MESSAGE_TEXT_KEPT = 2_000


@dataclass(eq=False)
class CompactLine:
    """One line of a compact view; `count` raw events stand behind it (first .. last)."""

    kind: LineKind
    first: RunEvent
    last: RunEvent
    count: int = 1
    state: str | None = None  # a tool's: "running" until its finish is seen
    text: str = ""  # a message's words, joined (the first MESSAGE_TEXT_KEPT characters)
    text_chars: int = 0  # how many characters the message's words have in all
    # Bumped on every change, so what was rendered from the line (server/compact_views.py) can be reused.
    revision: int = 0
    rendered: tuple[int, str] | None = None
    seq: int = 0  # the compactor's position of the line's last event

    @property
    def tool_name(self) -> str | None:
        return self.first.tool_name or self.last.tool_name

    def add_text(self, words: str) -> None:
        self.text_chars += len(words)
        room = MESSAGE_TEXT_KEPT - len(self.text)
        if room > 0:
            self.text += words[:room]


class Compactor:
    """Compact lines built incrementally, event by event, in constant time per event.

    Lines stay in the order of their last events (a joined tool line moves to where the tool finished), so a
    line's id (its last event's) is a cursor no earlier line reaches past. `trim` forgets lines whose last
    event the caller no longer keeps.
    """

    def __init__(self) -> None:
        self._lines: dict[int, CompactLine] = {}  # by the position of their last event, ascending
        self._open_tools: dict[str, CompactLine] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._lines)

    def lines(self) -> list[CompactLine]:
        return list(self._lines.values())

    def newest_first(self) -> Iterator[CompactLine]:
        return reversed(self._lines.values())

    def add_all(self, events: Iterable[RunEvent]) -> Compactor:
        for event in events:
            self.add(event)
        return self

    def add(self, event: RunEvent) -> None:
        self._seq += 1
        previous = next(reversed(self._lines.values()), None)
        if is_assistant_delta(event):
            if previous is not None and previous.kind == "message":
                self._move(previous, event)
                previous.count += 1
                previous.add_text(event.message or "")
            else:
                line = CompactLine("message", event, event)
                line.add_text(event.message or "")
                self._append(line)
        elif event.type == "tool_started":
            line = CompactLine("tool", event, event, state="running")
            self._open_tools[tool_call_key(event)] = line
            self._append(line)
        elif event.type == "tool_finished":
            started = self._open_tools.pop(tool_call_key(event), None)
            if started is None:
                self._append(CompactLine("tool", event, event, state=tool_state(event)))
            else:
                self._move(started, event)
                started.count, started.state = started.count + 1, tool_state(event)
        else:
            self._append(CompactLine("event", event, event))

    def trim(self, keep_from: int) -> None:
        """Forget lines whose last event came before the `keep_from`-th event added (1-based)."""
        while self._lines:
            seq, line = next(iter(self._lines.items()))
            if seq >= keep_from:
                return
            del self._lines[seq]
            if line.state == "running":
                self._open_tools.pop(tool_call_key(line.first), None)

    def _append(self, line: CompactLine) -> None:
        line.seq = self._seq
        self._lines[self._seq] = line

    def _move(self, line: CompactLine, event: RunEvent) -> None:
        """The line's last event is now `event`: it moves to the end (O(1): a dict keeps insertion order)."""
        del self._lines[line.seq]
        line.last = event
        line.revision += 1
        self._append(line)


def compact(events: Iterable[RunEvent]) -> list[CompactLine]:
    """The events as compact lines, oldest first (linear in the events)."""
    return Compactor().add_all(events).lines()


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
