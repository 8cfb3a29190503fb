"""Property tests: the request rules match the service's, and only a UUID ever becomes a runId path segment."""

from __future__ import annotations

import string
import uuid

import anyio
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mogplex_mcp.api import InvalidRequestError, StartRunRequest, is_uuid
from mogplex_mcp.api.models import HARNESSES, PROMPT_MAX_CHARS, checked_idempotency_key, js_trim
from tests.api.support import REPO_ID, Upstream, make_client, reply_fixture

SAFE_SEGMENT_CHARS = string.ascii_letters + string.digits + "_-"
FORBIDDEN_BRANCH_CHARS = " \t\n*:?[\\^~\x00\x7f" + "é€ßøΩ中\u00a0\u2028"


def start(**fields: object) -> StartRunRequest:
    return StartRunRequest.model_validate({"repoId": REPO_ID, "prompt": "do it", **fields})


def rejected(**fields: object) -> bool:
    try:
        start(**fields)
    except ValidationError:
        return True
    return False


# --- branch names ---------------------------------------------------------------------------------

segment = st.text(SAFE_SEGMENT_CHARS, min_size=1, max_size=12)
dotted_segment = st.builds(lambda a, b: f"{a}.{b}", segment, segment)
valid_branch = st.lists(st.one_of(segment, dotted_segment), min_size=1, max_size=5).map("/".join)


@given(valid_branch)
def test_ordinary_branch_names_are_accepted_and_sent_unchanged(name: str) -> None:
    assume(name not in ("HEAD", "@") and not name.endswith(".lock"))
    wire = start(baseBranch=name, workingBranch=name).to_wire()
    assert (wire["baseBranch"], wire["workingBranch"]) == (name, name)


@given(valid_branch, st.sampled_from(FORBIDDEN_BRANCH_CHARS), st.data())
def test_a_single_forbidden_character_anywhere_is_rejected(name: str, bad: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(name)))
    assert rejected(baseBranch=name[:at] + bad + name[at:])
    assert rejected(workingBranch=name[:at] + bad + name[at:])


@given(valid_branch, st.sampled_from(["..", "//", "@{"]), st.data())
def test_forbidden_sequences_anywhere_are_rejected(name: str, bad: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(name)))
    assert rejected(baseBranch=name[:at] + bad + name[at:])


@given(valid_branch, st.sampled_from(["/", ".", ".lock"]))
def test_forbidden_endings_are_rejected(name: str, ending: str) -> None:
    assert rejected(baseBranch=name + ending)
    assert rejected(baseBranch="/" + name)


@pytest.mark.parametrize("name", ["", "@", "HEAD"])
def test_reserved_branch_names_are_rejected(name: str) -> None:
    assert rejected(baseBranch=name)


@given(valid_branch)
def test_create_branch_needs_a_different_working_branch(name: str) -> None:
    assume(name != "HEAD" and not name.endswith(".lock"))
    assert rejected(baseBranch=name, workingBranch=name, createBranch=True)
    assert not rejected(baseBranch=name, workingBranch=name + "-work", createBranch=True)


# --- rootDirectory --------------------------------------------------------------------------------

path_segment = st.text(SAFE_SEGMENT_CHARS + ". ", min_size=1, max_size=10).filter(
    lambda s: js_trim(s) not in ("", "..")
)
valid_root = st.lists(path_segment, min_size=1, max_size=5).map("/".join)


@given(valid_root, st.booleans(), st.booleans())
def test_ordinary_subpaths_are_accepted(path: str, leading: bool, trailing: bool) -> None:
    assume(".." not in path.split("/") and "%2e" not in path.lower())
    shaped = ("/" if leading else "") + path + ("/" if trailing else "")
    assert start(rootDirectory=shaped).root_directory == shaped


@given(
    st.lists(path_segment, max_size=3),
    st.lists(path_segment, max_size=3),
    st.sampled_from(["..", "%2e%2e", "%2E%2e", "%2e"]),
)
def test_parent_segments_plain_or_percent_encoded_are_rejected(before: list[str], after: list[str], bad: str) -> None:
    assert rejected(rootDirectory="/".join([*before, bad, *after]))


@given(valid_root, st.text(" \t\n\u00a0", min_size=1, max_size=3))
def test_surrounding_whitespace_does_not_hide_a_parent_segment(path: str, pad: str) -> None:
    assert rejected(rootDirectory=f"{pad}{path}/..{pad}")
    assert rejected(rootDirectory=f"{pad}../{path}{pad}")


@given(valid_root, st.data())
def test_nul_and_empty_segments_are_rejected(path: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(path)))
    assert rejected(rootDirectory=path[:at] + "\x00" + path[at:])
    assert rejected(rootDirectory=f"{path}//{path}")


# --- prompt ---------------------------------------------------------------------------------------

whitespace = st.text(" \t\n\r\u00a0\u2028\u3000\ufeff", max_size=5)


@given(whitespace, st.text(min_size=1, max_size=200), whitespace)
def test_prompts_are_trimmed_like_the_service_does(left: str, body: str, right: str) -> None:
    assume(js_trim(body) == body)
    assert start(prompt=left + body + right).prompt == body


@given(whitespace)
def test_blank_prompts_are_rejected(blank: str) -> None:
    assert rejected(prompt=blank)


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 5), st.sampled_from(["a", "é", "中"]))
def test_prompt_limit_is_100k_characters(extra: int, char: str) -> None:
    assert not rejected(prompt=char * PROMPT_MAX_CHARS)
    assert rejected(prompt=char * (PROMPT_MAX_CHARS + 1 + extra))


def test_astral_characters_count_twice_as_the_service_counts_them() -> None:
    emoji = "\U0001f600"
    assert not rejected(prompt=emoji * (PROMPT_MAX_CHARS // 2))
    assert rejected(prompt=emoji * (PROMPT_MAX_CHARS // 2 + 1))


# --- harness and key ------------------------------------------------------------------------------


@given(st.text(max_size=20))
def test_only_the_known_harnesses_are_accepted(harness: str) -> None:
    assert rejected(harness=harness) is (harness not in HARNESSES)


def test_harness_is_omitted_when_unset_so_the_service_default_applies() -> None:
    assert "harness" not in start().to_wire()
    assert start(harness="claude-code").to_wire()["harness"] == "claude-code"


@given(st.text(string.printable.strip() + " ", min_size=1, max_size=200))
def test_printable_keys_up_to_200_are_accepted_trimmed(key: str) -> None:
    assume(key.strip())
    assert checked_idempotency_key(key) == key.strip()


@given(st.text(min_size=1, max_size=210))
def test_keys_are_accepted_only_if_a_header_can_carry_them(key: str) -> None:
    stripped = key.strip()
    fine = 0 < len(stripped) <= 200 and all(" " <= ch <= "~" for ch in stripped)
    try:
        checked_idempotency_key(key)
    except InvalidRequestError:
        assert not fine
    else:
        assert fine


# --- run ids --------------------------------------------------------------------------------------


async def _get_run_sends(run_id: str) -> tuple[bool, list[str]]:
    upstream = Upstream(default=reply_fixture("get_run_200.json"))
    async with make_client(upstream) as client:
        try:
            await client.get_run(run_id)
        except InvalidRequestError:
            return False, upstream.paths
    return True, upstream.paths


def uuid_with_one_change() -> st.SearchStrategy[str]:
    def mutate(value: uuid.UUID, data: st.DataObject) -> str:
        text = str(value)
        at = data.draw(st.integers(0, len(text) - 1))
        return text[:at] + data.draw(st.characters()) + text[at + 1 :]

    return st.builds(mutate, st.uuids(), st.data())


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=60), uuid_with_one_change(), st.uuids().map(lambda u: f"{u}/cancel")))
def test_any_non_uuid_run_id_is_refused_with_nothing_sent(run_id: str) -> None:
    assume(not is_uuid(run_id))
    sent, paths = anyio.run(_get_run_sends, run_id)
    assert not sent
    assert paths == []


@settings(max_examples=30, deadline=None)
@given(st.uuids(), st.booleans())
def test_every_uuid_becomes_exactly_one_path_segment(value: uuid.UUID, upper: bool) -> None:
    run_id = str(value).upper() if upper else str(value)
    sent, paths = anyio.run(_get_run_sends, run_id)
    assert sent
    assert paths == [f"/api/v1/mogplex/runs/{run_id}"]
