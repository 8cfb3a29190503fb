"""Fuzzed upstream answers: malformed JSON, missing fields, unknown enums, wrong types, huge payloads.

The upstream sits behind the transport seam (httpx2's MockTransport), answering every request with a
mutation of the valid answer for that endpoint. Whatever it says, each tool gives the model either a
usable, bounded result or a clear error — never a crash, a traceback, or the token.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mogplex_mcp.config import Settings
from tests.fuzz.support import LiveSession, assert_no_crash, live_server
from tests.server.harness import load_fixture, text_of

TOKEN = "mog_FuzzedUpstreamPat3Kx8Qw2Zr"
RUN_ID = "5b0c2a8e-3f1d-4c47-9a51-2f6e8d7c1a90"
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"
RUNS = "/api/v1/mogplex/runs"
RESULT_CHARS_MAX = 60_000  # far below what hosts reject (Claude Code: ~25k tokens)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

VALID: dict[str, Any] = {
    "repos": load_fixture("repos_200.json"),
    "start": load_fixture("start_run_202.json"),
    "run": load_fixture("get_run_200.json"),
    "events": load_fixture("events_observed_200.json"),
    "cancel": load_fixture("cancel_observed_200.json"),
}
TOOLS: dict[str, dict[str, Any]] = {
    "list_repos": {},
    "start_run": {"repoId": REPO_ID, "prompt": "Tidy the imports"},
    "get_run": {"runId": RUN_ID},
    "list_run_events": {"runId": RUN_ID, "includePayload": True, "limit": 200},
    "cancel_run": {"runId": RUN_ID},
}


def endpoint(request: httpx2.Request) -> str:
    path = request.url.path
    if path.endswith("/repos"):
        return "repos"
    if path == RUNS:
        return "start"
    return "events" if path.endswith("/events") else "cancel" if path.endswith("/cancel") else "run"


# --- mutations ------------------------------------------------------------------------------------

# No infinities: a JSON body cannot carry one (the mock upstream itself would fail to encode it, which the
# fuzzer then blamed on the tool as a crash).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
ENUM_WORDS = st.sampled_from(["awaiting_input", "STREAMING", "", "exploded", "mogplex", "cancellation_pending", "ok"])


@dataclass(frozen=True)
class Mutation:
    """How the upstream lies this time: applied to whichever endpoint is asked (each gets its own valid body)."""

    kind: str
    status: int | None
    value: Any = None
    where: int = 0
    headers: tuple[tuple[str, str], ...] = ()

    def reply(self, request: httpx2.Request) -> httpx2.Response:
        name = endpoint(request)
        valid = copy.deepcopy(VALID[name])
        status = self.status if self.status is not None else (202 if name == "start" else 200)
        headers = dict(self.headers)
        if self.kind == "bytes":
            return httpx2.Response(status, content=self.value, headers=headers)
        if self.kind == "truncated":
            text = json.dumps(valid)
            return httpx2.Response(status, content=text[: int(len(text) * self.value)].encode(), headers=headers)
        if self.kind == "whole":
            return httpx2.Response(status, json=self.value, headers=headers)
        if self.kind == "data":
            return httpx2.Response(status, json={"ok": True, "data": self.value}, headers=headers)
        mutate(valid["data"], self.kind, self.value, self.where)
        return httpx2.Response(status, json=valid, headers=headers)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree (dict keys and list indexes), parents first."""
    found: list[tuple[Any, ...]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def mutate(data: Any, kind: str, value: Any, where: int) -> None:
    """Change `data` in place: replace, delete, re-enum or bloat the node at `where` (mod the node count)."""
    if kind == "many":
        bloat(data, value)
        return
    spots = paths(data)
    if kind == "enum":
        spots = [p for p in spots if p[-1] in ("status", "type", "harness", "outcome", "alreadyTerminal")]
    if not spots:
        return
    *parent_path, last = spots[where % len(spots)]
    parent = data
    for key in parent_path:
        parent = parent[key]
    if kind == "delete":
        del parent[last]
    else:
        parent[last] = value


def bloat(data: Any, count: int) -> None:
    """Thousands of events or repos, each with a large message: the answer of a very long run."""
    if isinstance(data.get("events"), list) and data["events"]:
        template = data["events"][-1]
        data["events"] = [
            {**template, "id": f"evt-{i}", "message": f"step {i} " + "z" * 2_000, "payload": {"n": i}}
            for i in range(count)
        ]
    elif isinstance(data.get("repos"), list) and data["repos"]:
        # The API's own maximum: more than that is a bug of the upstream.
        data["repos"] = [{**data["repos"][0], "id": f"repo-{i}", "full_name": f"acme/r{i}"} for i in range(200)]


STATUSES = st.one_of(st.none(), st.sampled_from([200, 201, 202, 204, 301, 302, 400, 404, 409, 418, 429, 500, 502, 503]))
RETRY_AFTER = st.sampled_from(["-1", "NaN", "1e309", "Wed, 21 Oct 2015 07:28:00 GMT", "", "0", "3"])


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    kind = draw(st.sampled_from(["bytes", "truncated", "whole", "data", "replace", "delete", "enum", "many"]))
    status = draw(STATUSES) if kind in ("bytes", "truncated", "whole") or draw(st.integers(0, 5)) == 0 else None
    value: Any = None
    if kind == "bytes":
        value = draw(
            st.one_of(
                st.binary(max_size=200),
                st.sampled_from([b"", b"<html><body>502 Bad Gateway</body></html>", b"[" * 500, b'{"ok": tru']),
            )
        )
    elif kind == "truncated":
        value = draw(st.floats(0.0, 0.99))
    elif kind in ("whole", "data", "replace"):
        value = draw(JSON)
    elif kind == "enum":
        value = draw(ENUM_WORDS)
    elif kind == "many":
        value = draw(st.sampled_from([201, 2_000]))
    headers = (("retry-after", draw(RETRY_AFTER)),) if draw(st.booleans()) else ()
    return Mutation(kind, status, value, draw(st.integers(0, 10_000)), headers)


# --- the server behind a lying upstream -----------------------------------------------------------


class LyingUpstream:
    """A MockTransport handler that answers with the current mutation (valid answers when there is none)."""

    def __init__(self) -> None:
        self.mutation: Mutation | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if self.mutation is not None:
            return self.mutation.reply(request)
        name = endpoint(request)
        return httpx2.Response(202 if name == "start" else 200, json=VALID[name])


@pytest.fixture(scope="module")
def lying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveSession, LyingUpstream]]:
    upstream = LyingUpstream()
    settings_ = Settings(
        token=TOKEN,
        base_url="https://mogplex.example",
        state_dir=tmp_path_factory.mktemp("fuzz-upstream") / "state",
        max_retries=0,
        retry_budget_seconds=2.0,
        read_timeout=2.0,
    )
    with live_server(settings_, httpx2.MockTransport(upstream)) as session:
        yield session, upstream


def check_result(tool: str, live_session: LiveSession, arguments: dict[str, Any]) -> None:
    result = live_session.call(tool, arguments)
    text = text_of(result)
    assert_no_crash(tool, text)
    assert TOKEN not in text, f"{tool}: the token reached the model"
    if result.is_error:
        assert len(text) < 2_000, f"{tool}: an error of {len(text)} chars"
        return
    body = json.dumps(result.structured_content)
    assert TOKEN not in body
    assert len(body) < RESULT_CHARS_MAX, f"{tool}: a result of {len(body)} chars"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_any_upstream_answer_becomes_a_bounded_result_or_a_clear_error(
    lying: tuple[LiveSession, LyingUpstream], tool: str
) -> None:
    live_session, upstream = lying

    @FUZZ
    @given(mutations())
    def check(mutation: Mutation) -> None:
        upstream.mutation = mutation
        try:
            check_result(tool, live_session, TOOLS[tool])
        finally:
            upstream.mutation = None

    check()


def test_huge_event_text_is_cut_and_cleaned(lying: tuple[LiveSession, LyingUpstream]) -> None:
    """Event messages and payloads of 300k characters, with the token and bidi overrides inside."""
    live_session, upstream = lying
    events = copy.deepcopy(VALID["events"])
    for event in events["data"]["events"]:
        event["message"] = f"see {TOKEN} \u202e" * 30_000
        event["payload"] = {"output": "x" * 300_000, "nested": {"token": TOKEN}}
    upstream.mutation = Mutation("whole", None, events)
    try:
        result = live_session.call("list_run_events", {"runId": RUN_ID, "includePayload": True, "limit": 200})
    finally:
        upstream.mutation = None
    body = json.dumps(result.structured_content, ensure_ascii=False)
    assert not result.is_error and len(body) < RESULT_CHARS_MAX
    assert TOKEN not in body and "\u202e" not in body


@pytest.mark.parametrize("status", [429, 503])
def test_an_infinite_retry_after_is_a_clear_error(lying: tuple[LiveSession, LyingUpstream], status: int) -> None:
    """Found by this fuzzer: Retry-After "1e309" parses as infinity, and rounding it up used to crash the tool."""
    live_session, upstream = lying
    upstream.mutation = Mutation("bytes", status, b"", headers=(("retry-after", "1e309"),))
    try:
        # list_repos always asks the upstream (get_run may answer a finished run from its follower's cache).
        result = live_session.call("list_repos", TOOLS["list_repos"])
    finally:
        upstream.mutation = None
    assert result.is_error and "Retry after a minute" in text_of(result)


# --- bugs this suite found (fixed): deep nesting, unbounded upstream strings, over-answering lists ---


def test_a_deeply_nested_body_is_a_clear_error(lying: tuple[LiveSession, LyingUpstream]) -> None:
    live_session, upstream = lying
    upstream.mutation = Mutation("bytes", 200, b"[" * 100_000 + b"]" * 100_000)
    try:
        check_result("get_run", live_session, TOOLS["get_run"])
    finally:
        upstream.mutation = None


@pytest.mark.parametrize("field", ["runId", "status", "harness"])
def test_huge_run_fields_are_cut_to_size(lying: tuple[LiveSession, LyingUpstream], field: str) -> None:
    live_session, upstream = lying
    started = copy.deepcopy(VALID["start"])
    started["data"][field] = "x" * 300_000
    upstream.mutation = Mutation("whole", 202, started)
    try:
        check_result("start_run", live_session, {**TOOLS["start_run"], "prompt": f"Cut {field}"})
    finally:
        upstream.mutation = None


def test_list_repos_shows_at_most_its_limit(lying: tuple[LiveSession, LyingUpstream]) -> None:
    live_session, upstream = lying
    repos = copy.deepcopy(VALID["repos"])
    template = repos["data"]["repos"][0]
    repos["data"]["repos"] = [{**template, "id": f"r{i}", "full_name": f"acme/r{i}"} for i in range(1_000)]
    upstream.mutation = Mutation("whole", 200, repos)
    try:
        result = live_session.call("list_repos", {"limit": 50})
    finally:
        upstream.mutation = None
    assert result.structured_content is not None and result.structured_content["count"] <= 50
