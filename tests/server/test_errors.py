"""Every error family reaches the model as a clear, actionable message; bad input never reaches upstream."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
RUNS = "/api/v1/mogplex/runs"


@pytest.mark.parametrize("mode", MODES)
async def test_missing_token_says_how_to_set_it(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, token=None) as s:
        before = s.emulator.emulator.request_count()
        for tool, args in (("list_repos", {}), ("get_run", {"runId": UNKNOWN_RUN})):
            message = await s.error(tool, **args)
            assert "MOGPLEX_TOKEN" in message
        assert s.emulator.emulator.request_count() == before


@pytest.mark.parametrize("mode", MODES)
async def test_rejected_token_names_the_problem_and_never_the_token(tmp_path: Path, mode: Mode) -> None:
    bad = "mog_ThisTokenWasRevokedLongAgo42"
    async with session(tmp_path, mode, token=bad) as s:
        message = await s.error("list_repos")
        assert "401" in message and "token" in message.lower()
        assert bad not in message


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_token_cannot_start_and_is_told_which_scope(tmp_path: Path, mode: Mode) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        session(tmp_path, mode, emulator=emu, token=emu.read_only_token) as s,
    ):
        repo = (await s.ok("list_repos"))["repos"][0]["id"]
        message = await s.error("start_run", repoId=repo, prompt="Do a thing")
        assert "write" in message and "403" in message
        assert emu.emulator.run_ids() == []


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_run_is_a_clear_not_found(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        for tool in ("get_run", "cancel_run", "list_run_events", "wait_for_run"):
            message = await s.error(tool, runId=UNKNOWN_RUN)
            assert "not found" in message.lower() and "runId" in message, (tool, message)


@pytest.mark.parametrize("mode", MODES)
async def test_reused_key_with_other_arguments_explains_the_conflict(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        await s.start("First task", idempotencyKey="my-key-1")
        message = await s.error("start_run", repoId=(await s.ok("list_repos"))["repos"][0]["id"],
                                prompt="A different task", idempotencyKey="my-key-1")  # fmt: skip
        assert "409" in message and "idempotencyKey" in message
        assert len(s.emulator.emulator.run_ids()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_rate_limit_names_the_delay_without_hammering(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        emu.inject_fault("rate_limited_429", count=100, retry_after=60)
        before = emu.request_count()
        message = await s.error("list_repos")
        assert "Retry after 60 s" in message
        assert emu.request_count() - before == 1, "a Retry-After beyond the cap must not be slept through"


@pytest.mark.parametrize("mode", MODES)
async def test_persistent_503_becomes_a_clear_error_inside_the_budget(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        emu.inject_fault("unavailable_503", count=100, retry_after=1)
        message = await s.error("list_repos")
        assert "503" in message and "Retry after" in message
        emu.clear_faults()
        assert (await s.ok("list_repos"))["count"] >= 1, "the server must keep serving after a fault"


@pytest.mark.parametrize("mode", MODES)
async def test_html_502_is_retried_into_success(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        s.emulator.emulator.inject_fault("html_502", count=1)
        assert (await s.ok("list_repos"))["count"] >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_unreachable_upstream_is_reported_plainly(tmp_path: Path, mode: Mode) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with (
        running_emulator(EmulatorConfig()) as emu,
        session(tmp_path, mode, emulator=emu, base_url=f"http://127.0.0.1:{closed_port}") as s,
    ):
        message = await s.error("list_repos")
        assert "Could not reach Mogplex" in message


BAD_CALLS: list[tuple[str, dict[str, object], str]] = [
    ("get_run", {"runId": "../repos"}, "runId"),
    ("get_run", {"runId": "a/cancel"}, "runId"),
    ("cancel_run", {"runId": "%2e%2e"}, "runId"),
    ("list_run_events", {"runId": "00000000-0000-4000-8000-00000000000０"}, "runId"),
    ("wait_for_run", {"runId": "not-a-uuid"}, "runId"),
    ("list_run_events", {"runId": UNKNOWN_RUN, "limit": 500}, "limit"),
    ("wait_for_run", {"runId": UNKNOWN_RUN, "timeoutSeconds": 3600}, "timeoutSeconds"),
    ("list_repos", {"limit": 0}, "limit"),
    ("start_run", {"repoId": "r", "prompt": "   "}, "prompt"),
    ("start_run", {"repoId": "r", "prompt": "x", "baseBranch": "feature..x"}, "baseBranch"),
    ("start_run", {"repoId": "r", "prompt": "x", "workingBranch": "a b"}, "workingBranch"),
    ("start_run", {"repoId": "r", "prompt": "x", "rootDirectory": "../etc"}, "rootDirectory"),
    ("start_run", {"repoId": "r", "prompt": "x", "harness": "gpt"}, "harness"),
    ("start_run", {"repoId": "r", "prompt": "x", "idempotencyKey": "   "}, "idempotencyKey"),
    (
        "start_run",
        {"repoId": "r", "prompt": "x", "createBranch": True, "baseBranch": "m", "workingBranch": "m"},
        "workingBranch",
    ),
]


@pytest.mark.parametrize("mode", MODES)
async def test_bad_input_is_refused_before_any_upstream_request(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        before = emu.request_count()
        for tool, args, field in BAD_CALLS:
            message = await s.error(tool, **args)
            assert field in message, (tool, args, message)
            assert "Traceback" not in message
        assert emu.request_count() == before, "an invalid argument reached the upstream"


@pytest.mark.parametrize("mode", MODES)
async def test_oversized_prompt_is_refused_without_echoing_it(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        before = emu.request_count()
        huge = "mog_SecretLookingPromptText " + "x" * 100_000
        message = await s.error("start_run", repoId="r", prompt=huge)
        assert "prompt" in message and len(message) < 2_000
        assert "mog_SecretLookingPromptText" not in message
        assert emu.request_count() == before
