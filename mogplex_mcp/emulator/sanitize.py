"""Event payload sanitization exactly as upstream does it — blind spots included.

Upstream sanitizes `payload` only (never `message` or `toolName`) and does not know `mog_` tokens, so a
PAT inside a string survives. The emulator reproduces that on purpose: the MCP server must redact it.
"""

from __future__ import annotations

import json
import re
from typing import Any

REDACTED = "[redacted]"
TRUNCATED = "[truncated]"
MAX_STRING_CHARS = 2_000
STRING_CUT_SUFFIX = "…[truncated]"
MAX_ITEMS = 25
MAX_DEPTH = 3
MAX_PAYLOAD_JSON_CHARS = 20_000
PREVIEW_CHARS = 2_000

# Keys named like an env block, a GitHub token or the AI billing source (compared without separators).
_SENSITIVE_KEY_NAMES = frozenset(
    {"env", "envvars", "environment", "githubtoken", "ghtoken", "aibillingsource", "billingsource"}
)
_SENSITIVE_KEY_PARTS = (
    "authorization",
    "apikey",
    "token",
    "secret",
    "password",
    "cookie",
    "credential",
    "session",
    "jwt",
)
_SECRET_PATTERNS = (
    re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]+"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]+"),
)


def is_sensitive_key(key: str) -> bool:
    """True for a payload key whose value upstream replaces with "[redacted]"."""
    squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    return squashed in _SENSITIVE_KEY_NAMES or any(part in squashed for part in _SENSITIVE_KEY_PARTS)


def sanitize_string(text: str) -> str:
    """Redact bearer, GitHub and `sk-` secrets (not `mog_`), then cut long strings."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    if len(text) > MAX_STRING_CHARS:
        text = text[:MAX_STRING_CHARS] + STRING_CUT_SUFFIX
    return text


def _sanitize_value(value: Any, depth: int) -> Any:
    """`depth` is the nesting level of `value` (the payload's own fields are at 1)."""
    if isinstance(value, str):
        return sanitize_string(value)
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {
            str(key): REDACTED if is_sensitive_key(str(key)) else _sanitize_value(item, depth + 1)
            for key, item in items
        }
    if isinstance(value, list | tuple):
        return [_sanitize_value(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
    return value


def sanitize_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """The payload as upstream stores it: redacted, capped, and previewed when too large."""
    if not payload:
        return {}
    cleaned: dict[str, Any] = _sanitize_value(payload, 0)
    encoded = json.dumps(cleaned, ensure_ascii=False)
    if len(encoded) > MAX_PAYLOAD_JSON_CHARS:
        return {"truncated": True, "payloadPreview": encoded[:PREVIEW_CHARS]}
    return cleaned
