"""Upstream's payload sanitization, reproduced: redaction, caps, previews — and the `mog_` blind spot."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mogplex_mcp.emulator.sanitize import (
    MAX_ITEMS,
    MAX_PAYLOAD_JSON_CHARS,
    REDACTED,
    TRUNCATED,
    is_sensitive_key,
    sanitize_payload,
    sanitize_string,
)
from mogplex_mcp.emulator.validation import idempotency_key

SECRETS = [
    "ghp_abc123XYZ",
    "gho_abc",
    "ghs_abc",
    "ghu_abc",
    "ghr_abc",
    "github_pat_11AB_cd",
    "sk-proj-abc",
    "Bearer x.y",
]


def test_secret_keys_are_redacted_whatever_their_spelling() -> None:
    keys = [
        "env",
        "ENV_VARS",
        "githubToken",
        "aiBillingSource",
        "Authorization",
        "x-api-key",
        "api_key",
        "refresh_token",
        "clientSecret",
        "password",
        "set-cookie",
        "credentials",
        "sessionId",
        "jwt",
    ]
    payload = {key: "value" for key in keys} | {"path": "src/a.ts"}
    cleaned = sanitize_payload(payload)
    assert all(cleaned[key] == REDACTED for key in keys) and cleaned["path"] == "src/a.ts"
    assert not is_sensitive_key("pathname") and not is_sensitive_key("stage")


def test_secrets_inside_strings_are_redacted_but_mog_tokens_are_not() -> None:
    for secret in SECRETS:
        assert secret not in sanitize_string(f"before {secret} after")
    assert sanitize_string("use mog_AbCdEf0123456789AbCdEf01 here") == "use mog_AbCdEf0123456789AbCdEf01 here"


def test_caps_on_strings_items_depth_and_size() -> None:
    cleaned = sanitize_payload(
        {"long": "x" * 5000, "list": list(range(40)), "deep": {"a": {"b": {"c": 1}}}, "nested": {"ok": [1, 2]}}
    )
    assert len(cleaned["long"]) < 2100 and cleaned["long"].endswith("[truncated]")
    assert cleaned["list"] == list(range(MAX_ITEMS))
    assert cleaned["deep"] == {"a": {"b": TRUNCATED}}
    assert cleaned["nested"] == {"ok": [1, 2]}
    many = sanitize_payload({f"k{index}": index for index in range(40)})
    assert len(many) == MAX_ITEMS


def test_a_huge_payload_becomes_a_preview() -> None:
    cleaned = sanitize_payload({f"field{index}": "y" * 1900 for index in range(20)})
    assert cleaned["truncated"] is True and isinstance(cleaned["payloadPreview"], str)
    assert sanitize_payload(None) == {} and sanitize_payload({}) == {}


def test_idempotency_keys_are_trimmed() -> None:
    assert idempotency_key("  key-1 \t") == "key-1"


LONG_TEXT = st.builds(lambda unit, times: unit * times, st.text(min_size=1, max_size=4), st.integers(400, 1200))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50) | LONG_TEXT,
    lambda children: st.lists(children, max_size=30) | st.dictionaries(st.text(max_size=12), children, max_size=30),
    max_leaves=60,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=40), st.sampled_from(SECRETS))
def test_any_payload_comes_out_bounded_and_without_known_secrets(payload: dict[str, Any], secret: str) -> None:
    payload = payload | {"output": f"token {secret} leaked"}
    cleaned = sanitize_payload(payload)
    encoded = json.dumps(cleaned)
    assert secret not in encoded
    assert len(json.dumps(cleaned, ensure_ascii=False)) <= MAX_PAYLOAD_JSON_CHARS
