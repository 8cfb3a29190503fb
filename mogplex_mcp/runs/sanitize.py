"""Clean event text written by the remote agent before a model sees it: redact secrets, strip invisibles.

The upstream redacts payload keys and some token patterns, but not `mog_` tokens, and never touches
`message` or `toolName`. Everything that leaves this server passes through here.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

# A token starts at a word boundary, or right after an escaped \n, \r or \t: logged text is full of those
# ("…\\nmog_…"), and the "n" before the token would otherwise hide its start.
_START = r"(?:\b|(?<=\\[nrt]))"
_TOKEN_PATTERNS = re.compile(
    rf"""
    (?i:bearer)\s+[A-Za-z0-9._~+/=-]{{8,}}           # Authorization values
    | mog_[A-Za-z0-9]{{16,}}                           # Mogplex PATs, even glued to a word (the upstream
    | {_START}mog_[A-Za-z0-9]{{8,}}                    #   misses these): "MOGPLEX_TOKEN_mog_…"
    | gh[pousr]_[A-Za-z0-9]{{30,}}                     # GitHub tokens (36 chars after the prefix)
    | {_START}gh[pousr]_[A-Za-z0-9]{{16,}}
    | github_pat_[A-Za-z0-9_]{{20,}}
    | {_START}sk-[A-Za-z0-9_-]{{16,}}                  # API keys in the sk- style
    | {_START}xox[abpr]-[A-Za-z0-9-]{{10,}}            # Slack tokens
    | {_START}AKIA[0-9A-Z]{{16}}\b                     # AWS access key ids
    | -----BEGIN[ A-Z]*PRIVATE\ KEY-----[\s\S]*?(?:-----END[ A-Z]*PRIVATE\ KEY-----|$)
    """,
    re.VERBOSE,
)

_SECRET_KEY = re.compile(
    r"(?i)(authorization|api[_-]?key|token|secret|password|passwd|cookie|credential|session|jwt|private[_-]?key)"
)

# Characters that render as nothing or reorder text: a channel for instructions the user cannot see. Every
# format character (Unicode category Cf, as of Unicode 15.1) and control (Cc) except \t \n \r, plus the
# invisible letters and marks: Hangul fillers, the combining grapheme joiner, variation selectors.
_INVISIBLE = re.compile(
    "["
    "\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # C0/C1 controls except \t \n \r
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f"  # zero-width, bidi embeddings/overrides/isolates
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"  # ... and interlinear annotation controls
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f"  # Unicode tag characters
    "\U000e0100-\U000e01ef"  # variation selectors supplement
    "]"
)


def clean_text(text: str, *secrets: str | None) -> str:
    """Redact token-looking strings (and any given secret) and strip invisible characters."""
    # Invisibles go first: one hidden inside a secret would split it past the replace and rejoin it after.
    text = _INVISIBLE.sub("", text)
    for secret in secrets:
        if secret and (visible := _INVISIBLE.sub("", secret)):
            text = text.replace(visible, REDACTED)
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def clean_value(value: Any, *secrets: str | None, _depth: int = 0, _secret: bool = False) -> Any:
    """Apply `clean_text` through a JSON value; every value under a secret-looking key is redacted, however
    deep (`{"credentials": ["hunter2"]}` hides "hunter2"), keeping the shape and the keys below it."""
    if _secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str):
        return clean_text(value, *secrets)
    if _depth > 8:
        return "[truncated]"
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            name = clean_text(str(key), *secrets)
            secret = _secret or bool(_SECRET_KEY.search(name))
            cleaned[name] = clean_value(item, *secrets, _depth=_depth + 1, _secret=secret)
        return cleaned
    if isinstance(value, list | tuple):
        return [clean_value(item, *secrets, _depth=_depth + 1, _secret=_secret) for item in value]
    return value


def shorten(text: str, limit: int) -> str:
    """Cut text to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}… [{cut:,} more chars]"
