"""Clean event text written by the remote agent before a model sees it: redact secrets, strip invisibles.

The upstream redacts payload keys and some token patterns, but not `mog_` tokens, and never touches
`message` or `toolName`. Everything that leaves this server passes through here.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_TOKEN_PATTERNS = re.compile(
    r"""
    (?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}       # Authorization values
    | \bmog_[A-Za-z0-9]{8,}                     # Mogplex PATs (upstream misses these)
    | \bgh[pousr]_[A-Za-z0-9]{16,}              # GitHub tokens
    | \bgithub_pat_[A-Za-z0-9_]{20,}
    | \bsk-[A-Za-z0-9_-]{16,}                   # API keys in the sk- style
    | \bxox[abpr]-[A-Za-z0-9-]{10,}             # Slack tokens
    | \bAKIA[0-9A-Z]{16}\b                      # AWS access key ids
    | -----BEGIN[ A-Z]*PRIVATE\ KEY-----[\s\S]*?(?:-----END[ A-Z]*PRIVATE\ KEY-----|$)
    """,
    re.VERBOSE,
)

_SECRET_KEY = re.compile(
    r"(?i)(authorization|api[_-]?key|token|secret|password|passwd|cookie|credential|session|jwt|private[_-]?key)"
)

# Characters that render as nothing or reorder text: a channel for instructions the user cannot see.
_INVISIBLE = re.compile(
    "["
    "\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # C0/C1 controls except \t \n \r
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f"  # zero-width, bidi embeddings/overrides/isolates
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U000e0000-\U000e007f"  # Unicode tag characters
    "\U000e0100-\U000e01ef"  # variation selectors supplement
    "]"
)


def clean_text(text: str, *secrets: str | None) -> str:
    """Redact token-looking strings (and any given secret) and strip invisible characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _INVISIBLE.sub("", text)
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def clean_value(value: Any, *secrets: str | None, _depth: int = 0) -> Any:
    """Apply `clean_text` through a JSON value; values under secret-looking keys are redacted whole."""
    if isinstance(value, str):
        return clean_text(value, *secrets)
    if _depth > 8:
        return "[truncated]"
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            name = clean_text(str(key), *secrets)
            if _SECRET_KEY.search(name) and isinstance(item, str | int | float) and item != REDACTED:
                cleaned[name] = REDACTED
            else:
                cleaned[name] = clean_value(item, *secrets, _depth=_depth + 1)
        return cleaned
    if isinstance(value, list | tuple):
        return [clean_value(item, *secrets, _depth=_depth + 1) for item in value]
    return value


def shorten(text: str, limit: int) -> str:
    """Cut text to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}… [{cut:,} more chars]"
