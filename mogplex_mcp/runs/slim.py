"""Events kept compact: large text and payloads cut to what a view shows, with a note (issue 23, #4).

Followers keep a run's events for minutes to hours, and the upstream may send events of up to a megabyte
each. Nothing this server shows needs more than a few thousand characters of one event (a view shows 300 of
its message and 1,500 of its payload; the final message 400), so an event is cut on arrival: its message to
MESSAGE_KEPT characters, its payload to about PAYLOAD_KEPT (short scalars — states, ids, paths, URLs, flags —
are always kept whole; long strings, lists and deep values give way first). What was cut is said in the
text itself, so a reader knows there was more. A cut never ends inside a token-looking word, so redaction
(runs/sanitize.py) still sees every secret whole or not at all.

`event_size` is the estimate the follower's byte budgets count: characters of text plus a fixed overhead.
"""

from __future__ import annotations

import re
from typing import Any

from mogplex_mcp.api.models import RunEvent

MESSAGE_KEPT = 2_000
PAYLOAD_KEPT = 6_000
STRING_KEPT = 1_000
SHORT_SCALAR = 200
ITEMS_KEPT = 50
DEPTH_KEPT = 6
EVENT_OVERHEAD = 300
NOTE_KEY = "mogplexMcpNote"
NOTE = "large values cut by mogplex-mcp to what its views show"
_WORD_TAIL = re.compile(r"[A-Za-z0-9_\-./+=~]+$")


def slim_event(event: RunEvent) -> tuple[RunEvent, int]:
    """The event as kept (the same object when nothing needed cutting), and its estimated size."""
    update: dict[str, Any] = {}
    message = event.message
    if message is not None and len(message) > MESSAGE_KEPT:
        message = _cut(message, MESSAGE_KEPT) + f" … [{len(message) - MESSAGE_KEPT:,} more characters not kept]"
        update["message"] = message
    size = _size(event.payload, PAYLOAD_KEPT + 1)
    if size > PAYLOAD_KEPT:
        payload = _slim_top(event.payload)
        update["payload"] = payload
        size = _size(payload, 10 * PAYLOAD_KEPT)
    total = EVENT_OVERHEAD + len(message or "") + size + len(event.id) + len(event.type)
    return (event.model_copy(update=update) if update else event), total


def _cut(text: str, limit: int) -> str:
    """`text[:limit]`, backed off to before a word of token characters it would otherwise split."""
    head = text[:limit]
    if limit < len(text) and _WORD_TAIL.search(text[limit : limit + 1]):
        tail = _WORD_TAIL.search(head)
        if tail is not None:
            head = head[: tail.start()]
    return head


def _slim_top(payload: dict[str, Any]) -> dict[str, Any]:
    """Short scalars first and whole; then the rest within what is left of the budget."""
    kept: dict[str, Any] = {}
    budget = [PAYLOAD_KEPT]
    rest: list[tuple[str, Any]] = []
    for key, value in list(payload.items())[: ITEMS_KEPT * 4]:
        short = not isinstance(value, dict | list | str) or (isinstance(value, str) and len(value) <= SHORT_SCALAR)
        if short and len(key) <= SHORT_SCALAR:
            kept[key] = value
            budget[0] -= len(key) + (len(value) if isinstance(value, str) else 8)
        else:
            rest.append((key, value))
    for key, value in rest:
        if budget[0] <= 0:
            break
        kept[_cut(str(key), SHORT_SCALAR)] = _slim(value, 1, budget)
    kept[NOTE_KEY] = NOTE
    return kept


def _slim(value: Any, depth: int, budget: list[int]) -> Any:
    if isinstance(value, str):
        head = _cut(value, min(STRING_KEPT, max(0, budget[0])))
        budget[0] -= len(head)
        return head if len(head) == len(value) else f"{head}… [{len(value) - len(head):,} more characters]"
    if not isinstance(value, dict | list):
        budget[0] -= 8
        return value
    if depth >= DEPTH_KEPT or budget[0] <= 0:
        return "[cut]"
    if isinstance(value, list):
        items = [_slim(item, depth + 1, budget) for item in value[:ITEMS_KEPT] if budget[0] > 0]
        if len(items) < len(value):
            items.append(f"… {len(value) - len(items):,} more items")
        return items
    kept: dict[str, Any] = {}
    for key, item in list(value.items())[:ITEMS_KEPT]:
        if budget[0] <= 0:
            break
        name = _cut(str(key), SHORT_SCALAR)
        budget[0] -= len(name)
        kept[name] = _slim(item, depth + 1, budget)
    return kept


def _size(value: Any, limit: int) -> int:
    """Characters of text in `value` (keys and strings; 8 per other scalar), counting no further than `limit`."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += sum(len(str(key)) for key in item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        else:
            total += 8
    return total
