"""Fuzzed tool arguments: every invalid call is a clear error naming the field, and nothing reaches upstream.

Each example breaks exactly one argument of an otherwise valid call (or sends a wrong type, or leaves a
required one out), so the error must name that argument. Across the whole run the emulator must have
received no request but one kind: validation happens before anything is sent. The one exception is a
repository *name* given as start_run's repoId (all else valid): one read-only `GET /repos` looks it up so
that the refusal can name its id. Never a POST, never a run, never more than that one lookup per call.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mogplex_mcp.api.models import is_uuid
from mogplex_mcp.emulator import EmulatorConfig
from mogplex_mcp.emulator.app import Emulator
from mogplex_mcp.server.tools.repo_names import looks_like_name
from tests.faults.support import served
from tests.fuzz.support import LiveSession, assert_clear_error, live_session
from tests.server.harness import Session

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"
REPOS = "/api/v1/mogplex/repos"
CANARY = "mog_FuzzCanary7Tq2Lx9Wv4Np"
TOKENISH = re.compile(r"mog_[A-Za-z0-9]{8,}")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveSession, Session]]:
    """One emulator and one server for every example of this module; it must never see a request."""
    tmp: Path = tmp_path_factory.mktemp("fuzz-args")
    with live_session(served(tmp, "legacy", config=EmulatorConfig(speed=50.0))) as pair:
        yield pair


# --- strategies ------------------------------------------------------------------------------

WRONG_TYPES = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.just({"a": 1}),
)
# Characters that look like hex digits or hyphens to a person, and are not.
LOOK_ALIKES = "０１２３４５６７８９ａｂｃｄｅｆ٠١٢٣٤٥٦٧٨٩۰۱۲аеосᴀ𝟎𝟏𝟐²³‐‑‒–—−﹣－ｰ"
PATHS = [
    "../repos",
    "a/cancel",
    "%2e%2e",
    "%2E%2E%2Frepos",
    "..",
    ".",
    "/",
    "",
    " ",
    "runs",
    "?limit=200",
    "#events",
    "..%2f..%2frepos",
    "\x00",
    f"{UNKNOWN_RUN}/cancel",
    f"{UNKNOWN_RUN}/../../repos",
    f"../{UNKNOWN_RUN}",
    f"{UNKNOWN_RUN}\n",
    f" {UNKNOWN_RUN}",
    f"{UNKNOWN_RUN}?x=1",
    f"{{{UNKNOWN_RUN}}}",
    UNKNOWN_RUN.replace("-", ""),
    f"urn:uuid:{UNKNOWN_RUN}",
    CANARY,
]


@st.composite
def look_alike_uuid(draw: st.DrawFn) -> str:
    """A real-looking UUID with one to three characters swapped for look-alikes."""
    chars = list(str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)), version=4)))
    for _ in range(draw(st.integers(1, 3))):
        chars[draw(st.integers(0, len(chars) - 1))] = draw(st.sampled_from(LOOK_ALIKES))
    return "".join(chars)


BAD_RUN_IDS = st.one_of(
    st.sampled_from(PATHS),
    look_alike_uuid(),
    st.text(max_size=80).filter(lambda text: not is_uuid(text)),
    st.builds(lambda a, b: f"{a}/{b}", st.text(max_size=10), st.text(max_size=10)),
    WRONG_TYPES,
)
REPO_NAMES = st.from_regex(r"([A-Za-z0-9][A-Za-z0-9-]{0,8}/)?[A-Za-z0-9._-]{1,16}", fullmatch=True)
HUGE_INTS = st.one_of(st.integers(max_value=0), st.integers(min_value=201), st.just(2**70), st.just(-(2**70)))
NOT_INTEGERS = st.one_of(
    st.sampled_from(["ten", "", "1e400", "0x10", "NaN"]), st.floats(1.1, 1e6).filter(lambda f: f != int(f))
)
NOT_BOOLEANS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["maybe", "tru", "2", "yes please"]), st.integers(2, 10**6), st.just([])
)
BRANCH_RULE_BREAKERS = ["@", "HEAD", "/main", "main/", "main.", "main.lock", "a..b", "a//b", "a@{1}", "a*b", "a:b"]
BRANCH_RULE_BREAKERS += ["a?b", "a[b", "a\\b", "a^b", "a~1", "fé", "ｍain", "a b", "a\tb", "main\n", "ma\u200bin"]
INVALID_BRANCHES = st.one_of(
    st.sampled_from(BRANCH_RULE_BREAKERS),
    st.builds(
        lambda a, bad, b: f"{a}{bad}{b}",
        st.text("abc", min_size=1, max_size=5),
        st.sampled_from(list("*:?[\\^~ ")),
        st.text("abc", max_size=5),
    ),
)
INVALID_ROOTS = st.sampled_from(
    ["../etc", "a/../b", "a/..", "..", "a//b", "%2e%2e/x", "a/%2E/b", "a/%2e%2E", "x\x00y", "/a//b/"]
)
OVERSIZED_PROMPTS = st.one_of(
    st.just("x" * 100_001),
    st.just("😀" * 50_001),  # 50,001 characters, but 100,002 UTF-16 units: over the service's limit
    st.just(CANARY + " " + "y" * 100_000),
)
BLANK_PROMPTS = st.sampled_from(["", " ", "\n\t ", "\u3000\u00a0\ufeff", "\u2028"])

# (field, strategy of bad values) per tool; each example breaks one field of a valid call.
BAD_FIELDS: dict[str, list[tuple[str, st.SearchStrategy[Any]]]] = {
    "list_repos": [
        ("query", st.one_of(st.text(min_size=201, max_size=400), WRONG_TYPES.filter(lambda v: v is not None))),
        ("limit", st.one_of(HUGE_INTS, NOT_INTEGERS)),
    ],
    "get_run": [("runId", BAD_RUN_IDS)],
    "cancel_run": [("runId", BAD_RUN_IDS)],
    "wait_for_run": [
        ("runId", BAD_RUN_IDS),
        ("timeoutSeconds", st.one_of(st.floats(max_value=0.99), st.floats(min_value=50.01), st.just("soon"))),
        ("afterEventId", st.one_of(st.text(min_size=201, max_size=300), st.integers())),
    ],
    "list_run_events": [
        ("runId", BAD_RUN_IDS),
        ("limit", st.one_of(HUGE_INTS, NOT_INTEGERS)),
        ("afterEventId", st.one_of(st.text(min_size=201, max_size=300), st.integers())),
        ("includePayload", NOT_BOOLEANS),
    ],
    "start_run": [
        ("repoId", st.one_of(st.sampled_from(["", " ", "acme/api", "a/b", "x" * 201, "r\x00"]), WRONG_TYPES)),
        ("repoId", REPO_NAMES),
        ("repoId", BAD_RUN_IDS),
        ("prompt", st.one_of(BLANK_PROMPTS, OVERSIZED_PROMPTS, WRONG_TYPES)),
        ("harness", st.one_of(st.sampled_from(["Codex", "claude_code", "gpt", "", "mogplex"]), st.integers())),
        ("baseBranch", INVALID_BRANCHES),
        ("workingBranch", INVALID_BRANCHES),
        ("rootDirectory", INVALID_ROOTS),
        ("createBranch", NOT_BOOLEANS),
        ("conversationId", st.text(min_size=201, max_size=260).filter(str.strip)),
        ("mode", st.text(min_size=101, max_size=150).filter(str.strip)),
        ("idempotencyKey", st.sampled_from(["   ", "k" * 201, "ключ", "a\x01b", "tab\tinside", "é"])),
    ],
}
VALID: dict[str, dict[str, Any]] = {
    "list_repos": {},
    "get_run": {"runId": UNKNOWN_RUN},
    "cancel_run": {"runId": UNKNOWN_RUN},
    "wait_for_run": {"runId": UNKNOWN_RUN, "timeoutSeconds": 1},
    "list_run_events": {"runId": UNKNOWN_RUN},
    "start_run": {"repoId": REPO_ID, "prompt": "Add a health check endpoint"},
}
REQUIRED = {"get_run": ["runId"], "cancel_run": ["runId"], "wait_for_run": ["runId"], "list_run_events": ["runId"],
            "start_run": ["repoId", "prompt"]}  # fmt: skip


@st.composite
def invalid_call(draw: st.DrawFn, tool: str) -> tuple[dict[str, Any], str]:
    """Valid arguments for `tool` with exactly one made invalid (or a required one left out)."""
    arguments = dict(VALID[tool])
    if REQUIRED.get(tool) and draw(st.integers(0, 9)) == 0:
        missing = draw(st.sampled_from(REQUIRED[tool]))
        del arguments[missing]
        return arguments, missing
    field, values = draw(st.sampled_from(BAD_FIELDS[tool]))
    arguments[field] = draw(values)
    if tool == "start_run" and field == "workingBranch" and draw(st.booleans()):
        arguments |= {"createBranch": True, "baseBranch": "main", "workingBranch": "main"}  # must differ
    if draw(st.integers(0, 4)) == 0:
        arguments["unexpectedExtra"] = CANARY  # refused by name (its value never echoed)
        return arguments, "unknown argument 'unexpectedExtra'"
    return arguments, field


def _looked_up(tool: str, field: str, arguments: dict[str, Any]) -> bool:
    """Whether this call may make the one read-only name lookup: a name-like repoId, every other field valid."""
    value = arguments.get("repoId")
    return tool == "start_run" and field == "repoId" and isinstance(value, str) and looks_like_name(value)


def _assert_nothing_but_a_lookup(emulator: Emulator, before: int, lookups_allowed: int, what: str) -> None:
    """No POST, no run, and at most `lookups_allowed` requests since `before`, each a GET of /repos."""
    sent = emulator.requests[before:]
    assert emulator.run_ids() == [], f"{what} started a run"
    assert all(r.method == "GET" and r.path == REPOS for r in sent), f"{what} reached the upstream: {sent}"
    assert len(sent) <= lookups_allowed, f"{what}: {len(sent)} upstream requests, at most {lookups_allowed} allowed"


# --- the properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", sorted(BAD_FIELDS))
def test_an_invalid_argument_is_a_clear_error_and_never_a_request(
    server: tuple[LiveSession, Session], tool: str
) -> None:
    client, session = server
    emulator = session.emulator.emulator

    @FUZZ
    @given(invalid_call(tool))
    def check(case: tuple[dict[str, Any], str]) -> None:
        arguments, field = case
        before = emulator.request_count()
        text = assert_clear_error(tool, client.call(tool, arguments), names=field)
        _assert_nothing_but_a_lookup(emulator, before, int(_looked_up(tool, field, arguments)), f"{tool}({field})")
        assert not TOKENISH.search(text), f"{tool}: a token-looking value was echoed: {text[:300]}"

    check()


def test_a_repository_name_is_one_read_only_lookup_and_never_a_start(server: tuple[LiveSession, Session]) -> None:
    client, session = server
    emulator = session.emulator.emulator

    @settings(FUZZ, max_examples=60)
    @given(REPO_NAMES.filter(looks_like_name))
    def check(name: str) -> None:
        before = emulator.request_count()
        text = assert_clear_error("start_run", client.call("start_run", {**VALID["start_run"], "repoId": name}))
        assert text.startswith(f"start_run: invalid arguments: repoId {name.strip()!r}"), text
        assert "No run was started" in text, text
        assert emulator.request_count() - before == 1, "a name is looked up exactly once"
        _assert_nothing_but_a_lookup(emulator, before, 1, f"start_run(repoId={name!r})")

    check()


# Natural guesses a model makes, and the field the error must point it to.
GUESSES: dict[str, list[tuple[str, str]]] = {
    "start_run": [("branch", "workingBranch (with createBranch: true)"), ("repo", "repoId"), ("repo_id", "repoId"),
                  ("task", "prompt"), ("BaseBranch", "baseBranch"), ("create_branch", "createBranch")],
    "get_run": [("run_id", "runId"), ("id", "runId")],
    "cancel_run": [("runid", "runId"), ("reason", "")],
    "wait_for_run": [("timeout", "timeoutSeconds"), ("cursor", "afterEventId")],
    "list_run_events": [("after", "afterEventId"), ("include_payload", "includePayload")],
    "list_repos": [("search", "query"), ("max", "")],
}  # fmt: skip


@pytest.mark.parametrize("tool", sorted(GUESSES))
def test_an_unknown_argument_is_refused_by_name_with_the_field_meant(
    server: tuple[LiveSession, Session], tool: str
) -> None:
    client, session = server
    emulator = session.emulator.emulator
    for guess, meant in GUESSES[tool]:
        before = emulator.request_count()
        text = assert_clear_error(tool, client.call(tool, {**VALID[tool], guess: CANARY}), names=repr(guess))
        assert text.startswith(f"{tool}: invalid arguments: unknown argument {guess!r}"), text
        if meant:
            assert f"use {meant}" in text, text
        assert CANARY not in text, "the unknown argument's value was echoed"
        assert emulator.request_count() == before, f"{tool}({guess}) reached the upstream"


@pytest.mark.parametrize("tool", sorted(VALID))
def test_any_unknown_argument_name_is_refused_and_never_a_request(
    server: tuple[LiveSession, Session], tool: str
) -> None:
    client, session = server
    emulator = session.emulator.emulator
    known = set(VALID[tool]) | {field for field, _ in BAD_FIELDS[tool]}

    @FUZZ
    @given(st.text(min_size=1, max_size=40).filter(lambda name: name not in known))
    def check(name: str) -> None:
        before = emulator.request_count()
        text = assert_clear_error(tool, client.call(tool, {**VALID[tool], name: "x"}), names="unknown argument")
        assert emulator.request_count() == before, f"{tool}({name!r}) reached the upstream"
        assert not TOKENISH.search(text)

    check()


def test_the_server_still_serves_after_the_fuzzing(server: tuple[LiveSession, Session]) -> None:
    client, session = server
    _assert_nothing_but_a_lookup(session.emulator.emulator, 0, 10**6, "an invalid argument")
    repos = client.call("list_repos", {})
    assert not repos.is_error and repos.structured_content is not None
    assert repos.structured_content["count"] >= 1
