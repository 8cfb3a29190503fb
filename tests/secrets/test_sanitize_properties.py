"""Properties of the event-text cleaner: no token survives, no invisible character survives, whatever surrounds them."""

from __future__ import annotations

import string
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from mogplex_mcp.runs.sanitize import REDACTED, clean_text, clean_value

PROPS = settings(max_examples=400, deadline=None, derandomize=True)

# Characters a person cannot see, or that reorder what they see: bidi controls, zero-width, tags, fillers.
INVISIBLES = (
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\u206a\u206f\ufeff\u00ad\u180e\u034f\u061c\u115f\u1160\u3164\uffa0"
    "\ufe00\ufe0f\ufff9\ufffa\ufffb\u0600\u06dd\u070f\u08e2\U000110bd\U0001bca0\U0001d173"
    "\U000e0001\U000e0020\U000e0041\U000e007f\U000e0100\U000e01ef"
    "\x00\x01\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f\x80\x85\x9b\x9f"
)
BASE62 = string.ascii_letters + string.digits
# Text around a token, sharing no character with it (so a token fragment in the output can only be a leak).
AROUND = st.text(" .,;:!?()[]{}<>#%&*+=|~éßяあ漢\n\t", max_size=20)
ANY_TEXT = st.text(st.one_of(st.characters(codec="utf-8", exclude_categories=["Cs"]), st.sampled_from(INVISIBLES)))


def invisible(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf") or ch in INVISIBLES


def tokens() -> st.SearchStrategy[str]:
    """Secrets of every shape the cleaner promises to catch (the upstream misses `mog_`)."""
    body = st.text(BASE62, min_size=24, max_size=40)
    return st.one_of(
        body.map(lambda b: f"mog_{b}"),
        body.map(lambda b: f"ghp_{b}"),
        body.map(lambda b: f"gho_{b}"),
        body.map(lambda b: f"github_pat_{b}_{b}"),
        body.map(lambda b: f"sk-{b}"),
        body.map(lambda b: f"xoxb-{b}"),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda b: f"AKIA{b}"),
    )


@PROPS
@given(ANY_TEXT)
def test_no_invisible_or_control_character_survives(text: str) -> None:
    cleaned = clean_text(text)
    assert not [hex(ord(ch)) for ch in cleaned if invisible(ch)]


@PROPS
@given(ANY_TEXT)
def test_cleaning_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


@PROPS
@given(AROUND, tokens(), AROUND, st.sampled_from([" ", "=", ":", "'", '"', "\n", "(", "/", "\\n", "\\t", "\\r"]))
def test_a_token_is_redacted_wherever_it_sits(before: str, token: str, after: str, glue: str) -> None:
    """Including right after an escaped newline ("…\\nmog_…"), as tokens sit in logged command output."""
    cleaned = clean_text(f"{before}{glue}{token} {after}")
    assert token not in cleaned and token[8:] not in cleaned, cleaned
    assert REDACTED in cleaned


@PROPS
@given(AROUND, st.text(BASE62, min_size=24, max_size=32), st.sampled_from(["_", "x", "MOGPLEX_TOKEN_", "9", "é"]))
def test_a_mogplex_token_glued_to_a_word_is_redacted(before: str, body: str, glue: str) -> None:
    token = f"mog_{body}"
    cleaned = clean_text(f"{before}{glue}{token}")
    assert token not in cleaned and body not in cleaned, cleaned


@PROPS
@given(AROUND, tokens(), st.lists(st.sampled_from(INVISIBLES[:30]), min_size=1, max_size=4), st.data())
def test_invisible_characters_cannot_smuggle_a_token_past_the_redactor(
    before: str, token: str, hidden: list[str], data: st.DataObject
) -> None:
    chars = list(token)
    for ch in hidden:
        chars.insert(data.draw(st.integers(1, len(chars) - 1)), ch)
    cleaned = clean_text(before + " " + "".join(chars))
    assert token not in cleaned and token[8:] not in cleaned, cleaned


@PROPS
@given(st.text(BASE62 + "._-", min_size=20, max_size=60), st.lists(st.sampled_from(INVISIBLES[:30]), max_size=4))
def test_the_callers_own_secret_never_survives_even_split_by_invisibles(secret: str, hidden: list[str]) -> None:
    """An OAuth bearer has no telltale prefix: only knowing it can remove it, invisibles or not."""
    smuggled = secret
    for index, ch in enumerate(hidden):
        cut = 1 + (index * 7) % (len(smuggled) - 1)
        smuggled = smuggled[:cut] + ch + smuggled[cut:]
    assert secret not in clean_text(f"token was {smuggled}.", secret)


SECRET_KEYS = st.sampled_from(["password", "api_key", "Authorization", "GITHUB_TOKEN", "session_id", "credentials"])
JSON_LEAVES = st.one_of(st.text(BASE62, min_size=6, max_size=20), st.integers(1000, 10**9))


@PROPS
@given(SECRET_KEYS, JSON_LEAVES, st.sampled_from(["scalar", "list", "dict", "deep"]))
def test_values_under_secret_keys_are_redacted_whatever_their_shape(key: str, leaf: str | int, shape: str) -> None:
    value: object = {"scalar": leaf, "list": [leaf, leaf], "dict": {"v": leaf}, "deep": [{"v": [leaf]}]}[shape]
    cleaned = clean_value({"outer": {key: value}})
    assert str(leaf) not in repr(cleaned), cleaned
