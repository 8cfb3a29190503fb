"""What a feed entry holds: a versioned, compact encoding of one `FeedUpdate`, and its tolerant decoding.

Entries are Redis Stream fields: `v` (the format version), `n` (the entry's size in bytes, for the per-run
byte budget) and `u` (the update as JSON: the run's detail and its new events). Version 1 entries (written
before versions existed) have no `v`; their `u` has the same shape, so both directions of a rolling deploy
read each other. An entry of a version this replica does not know is skipped, and the reader follows the run
upstream by itself (`FeedUpdate.follow_alone`): a newer leader never leaves an older reader with stale waits.
An entry that cannot be decoded at all is skipped (the caller logs it once per feed).

Compact, not raw: events are shared between replicas only as far as a view needs them. Long strings are cut
(with a note of how much was cut), deep or wide structures are bounded, an event larger than
`EVENT_MAX_BYTES` keeps only its short scalar fields, and an entry larger than `ENTRY_MAX_BYTES` carries the
rest of its events as stubs. The replica that follows the run upstream keeps the full events.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs.store import FeedUpdate

FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
STRING_MAX_CHARS = 1_000
SCALAR_KEEP_CHARS = 200  # what a cut event keeps of each field (URLs, states, codes, paths)
ITEMS_MAX = 50
DEPTH_MAX = 6
EVENT_MAX_BYTES = 8 * 1024
ENTRY_MAX_BYTES = 128 * 1024
CUT_KEY = "mogplexFeedCut"  # set on an event whose payload was cut for the feed


class FeedEntryError(ValueError):
    """An entry this replica cannot decode (corrupt, or a shape it does not know)."""


def _cut_text(text: str, limit: int, cuts: list[int] | None = None) -> str:
    if len(text) <= limit:
        return text
    if cuts is not None:
        cuts.append(len(text) - limit)
    return f"{text[:limit]}… [{len(text) - limit} more characters not shared between replicas]"


def _bounded(value: Any, cuts: list[int], depth: int = 0) -> Any:
    """`value` with long strings cut and deep or wide structures bounded (JSON types); `cuts` notes each cut."""
    if isinstance(value, str):
        return _cut_text(value, STRING_MAX_CHARS, cuts)
    if isinstance(value, dict | list) and depth >= DEPTH_MAX:
        cuts.append(1)
        return "[nested data not shared between replicas]"
    if isinstance(value, dict):
        items = list(value.items())
        kept = {str(k): _bounded(v, cuts, depth + 1) for k, v in items[:ITEMS_MAX]}
        if len(items) > ITEMS_MAX:
            cuts.append(len(items) - ITEMS_MAX)
            kept[CUT_KEY] = f"{len(items) - ITEMS_MAX} more keys not shared between replicas"
        return kept
    if isinstance(value, list):
        kept_list = [_bounded(v, cuts, depth + 1) for v in value[:ITEMS_MAX]]
        if len(value) > ITEMS_MAX:
            cuts.append(len(value) - ITEMS_MAX)
            kept_list.append(f"[{len(value) - ITEMS_MAX} more items not shared between replicas]")
        return kept_list
    return value


def _size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":")).encode())


def _stub(data: dict[str, Any], why: str) -> dict[str, Any]:
    """An event reduced to its id, type, time and short scalar fields (what views read: states, URLs, codes)."""
    payload = data.get("payload") or {}
    short = {k: v for k, v in payload.items() if not isinstance(v, dict | list) and len(str(v)) <= SCALAR_KEEP_CHARS}
    stub: dict[str, Any] = {key: data[key] for key in ("id", "type", "toolName", "createdAt") if key in data}
    if isinstance(data.get("message"), str):
        stub["message"] = _cut_text(data["message"], SCALAR_KEEP_CHARS)
    stub["payload"] = {**short, CUT_KEY: why}
    return stub


def compact_event(event: RunEvent) -> dict[str, Any]:
    """The event as the feed carries it: at most EVENT_MAX_BYTES; CUT_KEY in its payload says what was cut."""
    cuts: list[int] = []
    data: dict[str, Any] = _bounded(event.model_dump(mode="json", by_alias=True, exclude_none=True), cuts)
    size = _size(data)
    if size > EVENT_MAX_BYTES:
        return _stub(data, f"event of {size} bytes cut to its short fields between replicas")
    if cuts:
        data["payload"] = {**(data.get("payload") or {}), CUT_KEY: "long text cut between replicas"}
    return data


def encode_update(update: FeedUpdate) -> str:
    """The update as JSON of at most about ENTRY_MAX_BYTES (events past the budget become stubs)."""
    if update.follow_alone:
        return json.dumps({"alone": True}, separators=(",", ":"))
    run = update.run.model_dump(mode="json", by_alias=True, exclude_none=True) if update.run else None
    spent = _size(run) + 64
    events: list[dict[str, Any]] = []
    for event in update.events:
        data = compact_event(event)
        size = _size(data)
        if spent + size > ENTRY_MAX_BYTES:
            data = _stub(data, "cut to its short fields: the update was too large to share whole")
            size = _size(data)
        spent += size
        events.append(data)
    return json.dumps({"run": run, "events": events, "window": update.window_exhausted}, separators=(",", ":"))


def decode_entry(fields: dict[str, Any]) -> FeedUpdate:
    """The update an entry holds; FeedEntryError when it cannot be read. A newer version: follow alone."""
    try:
        version = int(fields.get("v") or 1)
    except (TypeError, ValueError):
        raise FeedEntryError(f"an unreadable format version {str(fields.get('v'))[:20]!r}") from None
    if version not in READABLE_VERSIONS:
        return FeedUpdate(run=None, follow_alone=True, newer_format=version)
    try:
        data = json.loads(fields["u"])
        if not isinstance(data, dict):
            raise FeedEntryError("an entry that is not a JSON object")
        if data.get("alone"):
            return FeedUpdate(run=None, follow_alone=True)
        run = RunDetail.model_validate(data["run"]) if data.get("run") else None
        events = [RunEvent.model_validate(item) for item in data.get("events") or []]
    except (KeyError, TypeError, ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise FeedEntryError(f"an undecodable entry ({type(exc).__name__})") from None
    return FeedUpdate(run=run, events=events, window_exhausted=bool(data.get("window")))
