"""What the start journal stores instead of secrets: fingerprints of tokens and requests, and clean titles."""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from mogplex_mcp.runs.sanitize import clean_text

TITLE_MAX_CHARS = 80


def token_fingerprint(token: str) -> str:
    """Identify a token without storing it: the first 32 hex characters of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def request_fingerprint(base_url: str, body: Mapping[str, Any], *, token: str) -> str:
    """Fingerprint a start request (its upstream plus its wire body as canonical JSON), keyed by the token.

    An HMAC, not a plain hash: without the token, the file does not let anyone confirm a guessed prompt.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # NUL cannot occur in a URL, so the boundary between the two parts is unambiguous.
    material = f"{base_url}\x00{canonical}".encode("utf-8", "surrogatepass")
    return hmac.new(token.encode("utf-8", "surrogatepass"), material, hashlib.sha256).hexdigest()


def clean_title(text: str, *secrets: str | None) -> str:
    """A one-line title: secrets redacted, control characters dropped, whitespace collapsed, at most 80 chars."""
    text = clean_text(text, *secrets)  # before the cut, so no half of a token survives it
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    collapsed = " ".join(kept.split())
    if len(collapsed) <= TITLE_MAX_CHARS:
        return collapsed
    return collapsed[: TITLE_MAX_CHARS - 1].rstrip() + "…"
