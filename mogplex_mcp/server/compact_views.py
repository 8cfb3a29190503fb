"""Compact event views for results and the transcript: coalesced lines (runs/compact.py), cleaned of secrets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.compact import CompactLine, compact, line_text
from mogplex_mcp.runs.sanitize import clean_text, clean_value, shorten
from mogplex_mcp.server.results import MESSAGE_CHARS, EventView

TRANSCRIPT_LINE_CHARS = 400


def compact_event_views(
    events: Sequence[RunEvent], secret: str | None, limit: int | None = None, *, lines: list[CompactLine] | None = None
) -> list[EventView]:
    """One view per compact line (the first `limit`); a coalesced line carries its last event's id (a valid cursor).

    `lines`: the events' compact lines already built (a follower keeps them), so only the views shown cost.
    """
    chosen = (lines if lines is not None else compact(events))[:limit]
    return [_view(line, secret) for line in chosen]


def _view(line: CompactLine, secret: str | None) -> EventView:
    if line.kind == "event":
        return EventView.build(line.first, include_payload=False, secret=secret)
    parts = f" ({line.count} events)" if line.count > 1 else ""
    if line.kind == "tool":
        kind, text = "tool", f"{line.state or 'finished'}{parts}"
    else:
        kind, text = "assistant_message", " ".join(line.text.split()) + parts
    return EventView(
        id=line.last.id,
        type=kind,
        created_at=line.first.created_at,
        tool_name=clean_text(line.tool_name, secret)[:120] if line.tool_name else None,
        message=shorten(clean_text(text, secret), MESSAGE_CHARS) if text else None,
    )


def transcript_lines(events: Sequence[RunEvent], secret: str) -> list[str]:
    """The transcript's lines, one per compact line (a tool's start and finish share one; deltas form one)."""
    return [_transcript_line(line, secret) for line in compact(events)]


def transcript_tail(lines: Sequence[CompactLine], secret: str, budget: int) -> list[str]:
    """The last transcript lines that fit in `budget` characters, oldest first.

    Costs what it shows: lines are rendered newest first until the budget is spent, and a line's rendering is
    kept on it (until the line changes), so a viewer re-reading a long run renders only what is new.
    """
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        text = _rendered(line, secret)
        used += len(text) + 1
        if used > budget:
            break
        kept.append(text)
    return kept[::-1]


def _rendered(line: CompactLine, secret: str) -> str:
    if line.rendered is not None and line.rendered[0] == line.revision:
        return line.rendered[1]
    text = _transcript_line(line, secret)
    line.rendered = (line.revision, text)
    return text


def coalescing_note(event_count: int, line_count: int) -> str | None:
    """What the transcript says when its lines stand for more events than there are lines."""
    if line_count >= event_count:
        return None
    return (
        f"({event_count} events in {line_count} lines: a tool's start and finish share a line, "
        "the agent's streamed words form one message)"
    )


def _transcript_line(line: CompactLine, secret: str) -> str:
    event = line.first
    when = event.created_at.astimezone(UTC).strftime("%H:%M:%S") if event.created_at else "--:--:--"
    text = clean_text(line_text(line), secret)
    if line.kind == "event" and not event.message and event.payload:
        text += " · " + str(clean_value(event.payload, secret))
    return f"{when}  {shorten(' '.join(text.split()), TRANSCRIPT_LINE_CHARS)}"
