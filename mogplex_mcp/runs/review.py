"""What a reviewer of delegated work wants from a run's events: the files it changed and its last words.

Both are derived from events only, so they are known as far as the events seen go: "unknown" (None)
when no file-editing tool event or no assistant text was seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.compact import is_assistant_delta, tool_call_key, tool_failed

CHANGED_FILES_SHOWN = 20
FINAL_MESSAGE_CHARS = 400
PATH_MAX_CHARS = 200

# Tool names (lower-cased) that write files, across the harnesses' vocabularies.
FILE_EDIT_TOOLS = frozenset(
    {
        "edit_file", "write_file", "create_file", "delete_file", "apply_patch", "str_replace",
        "str_replace_editor", "str_replace_based_edit_tool", "replace_in_file", "edit", "multiedit",
        "multi_edit", "write", "patch", "move_file", "rename_file",
    }
)  # fmt: skip
_PATH_KEYS = ("path", "file_path", "filePath", "file", "filename", "target_file")


def changed_files(events: Iterable[RunEvent], cap: int = CHANGED_FILES_SHOWN) -> tuple[list[str], int]:
    """Paths written by file-editing tools that did not fail: the first `cap`, and how many in all.

    A tool use told as a start and a finish counts once its finish says it did not fail; one told in a
    single `tool_call` event counts unless its payload says `ok: false`.
    """
    seen: dict[str, None] = {}
    pending: dict[str, list[str]] = {}
    for event in events:
        if not event.tool_name or event.tool_name.lower() not in FILE_EDIT_TOOLS:
            continue
        paths = _paths(event.payload)
        if event.type == "tool_started":
            pending.setdefault(tool_call_key(event), []).extend(paths)
        elif event.type == "tool_finished":
            paths = pending.pop(tool_call_key(event), []) + paths
            if not tool_failed(event):
                seen.update(dict.fromkeys(paths))
        elif event.type == "tool_call" and event.payload.get("ok") is not False:
            seen.update(dict.fromkeys(paths))
    listed = list(seen)
    return listed[:cap], len(listed)


def final_message(events: Iterable[RunEvent], limit: int = FINAL_MESSAGE_CHARS) -> str | None:
    """The agent's last streamed message (consecutive `assistant_delta` logs joined), cut to `limit`."""
    last: list[str] = []
    current: list[str] | None = None
    for event in events:
        if is_assistant_delta(event):
            if current is None:
                current = last = []
            current.append(event.message or "")
        else:
            current = None
    text = " ".join("".join(last).split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def pending_question(events: Iterable[RunEvent], limit: int = FINAL_MESSAGE_CHARS) -> str | None:
    """What an agent in `awaiting_input` asked: the last event's `payload.question`, else its last words.

    Untrusted text, cut to `limit`; None when the events seen carry neither.
    """
    seen = list(events)
    asked = None
    for event in seen:
        question = event.payload.get("question")
        if isinstance(question, str) and question.strip():
            asked = " ".join(question.split())
    text = asked or final_message(seen, limit)
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _paths(payload: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for source in (payload, payload.get("input"), payload.get("args"), payload.get("arguments")):
        if not isinstance(source, dict):
            continue
        for key in _PATH_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                found.append(value.strip()[:PATH_MAX_CHARS])
        listed = source.get("paths")
        if isinstance(listed, list):
            found += [item.strip()[:PATH_MAX_CHARS] for item in listed if isinstance(item, str) and item.strip()]
    return found
