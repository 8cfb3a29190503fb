"""Streamable HTTP under uvicorn on loopback: per-request tokens, isolation, DNS-rebinding rules, read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mogplex_mcp.config import ConfigError, Settings
from mogplex_mcp.emulator import (
    DEMO_TOKEN,
    OTHER_USER_TOKEN,
    READ_ONLY_TOKEN,
    EmulatorConfig,
    EmulatorHandle,
    running_emulator,
)
from mogplex_mcp.server.transport.http import (
    HttpOptions,
    build_http_app,
    http_settings,
    running_http,
    transport_security,
)
from tests.e2e.support import (
    MODES,
    REPO_ID,
    UNKNOWN_TOKEN,
    USER_B_TOKEN,
    WRITERS,
    Mode,
    emulator_config,
    error,
    http_client,
    initialize_error,
    ok,
    tool_names,
)

pytestmark = pytest.mark.anyio
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def gateway(
    tmp_path: Path, options: HttpOptions | None = None, *, emulator: EmulatorConfig | None = None, **settings: Any
) -> AsyncIterator[tuple[str, EmulatorHandle]]:
    """An emulator (by default two tokens of one user), and the HTTP server in front of it; no MOGPLEX_TOKEN."""
    async with running_emulator(emulator or emulator_config()) as emu:
        values: dict[str, Any] = {"token": None, "base_url": emu.base_url, "state_dir": tmp_path / "state"}
        values |= {"retry_budget_seconds": 3.0, "read_timeout": 5.0} | settings
        app = build_http_app(Settings(**values), options or HttpOptions(port=0))
        async with running_http(app) as url:
            yield url, emu


@pytest.mark.parametrize("mode", MODES)
async def test_each_request_uses_its_own_token_and_users_stay_apart(tmp_path: Path, mode: Mode) -> None:
    prompt = "Add rate limiting to the login endpoint"
    async with (
        gateway(tmp_path) as (url, emu),
        http_client(url, mode, DEMO_TOKEN) as alice,
        http_client(url, mode, USER_B_TOKEN) as bob,
        http_client(url, mode, READ_ONLY_TOKEN) as reader,
    ):
        a_run = (await ok(alice, "start_run", repoId=REPO_ID, prompt=prompt))["run"]["runId"]
        # The same start by another user is not a retry of Alice's: it must not reuse her idempotency key.
        b_started = await ok(bob, "start_run", repoId=REPO_ID, prompt=prompt)
        assert b_started["run"]["runId"] != a_run
        assert b_started["replayed"] is False
        # Alice retrying is de-duplicated as usual.
        assert (await ok(alice, "start_run", repoId=REPO_ID, prompt=prompt))["run"]["runId"] == a_run

        # Runs known to this server are listed per caller.
        alice_uris = {str(r.uri) for r in (await alice.list_resources()).resources}
        bob_uris = {str(r.uri) for r in (await bob.list_resources()).resources}
        assert f"mogplex://runs/{a_run}" in alice_uris
        assert f"mogplex://runs/{a_run}" not in bob_uris
        assert f"mogplex://runs/{b_started['run']['runId']}" in bob_uris

        # The token that reaches upstream is the caller's: a read-scoped caller cannot cancel.
        refused = await error(reader, "cancel_run", runId=a_run)
        assert "403" in refused or "scope" in refused
        assert (await ok(alice, "get_run", runId=a_run))["run"]["status"] != "cancelled"
        assert emu.emulator.request_count("POST", "/api/v1/mogplex/runs") >= 3


@pytest.mark.parametrize("mode", MODES)
async def test_another_users_run_is_not_found_and_cannot_be_cancelled(tmp_path: Path, mode: Mode) -> None:
    writer = frozenset({"read", "write"})
    two_users = emulator_config(
        tokens={DEMO_TOKEN: writer, OTHER_USER_TOKEN: writer}, owners={DEMO_TOKEN: "alice", OTHER_USER_TOKEN: "bob"}
    )
    async with (
        gateway(tmp_path, emulator=two_users) as (url, emu),
        http_client(url, mode, DEMO_TOKEN) as alice,
        http_client(url, mode, OTHER_USER_TOKEN) as bob,
    ):
        a_run = (await ok(alice, "start_run", repoId=REPO_ID, prompt="[scenario:endless] Keep going"))["run"]["runId"]
        assert (await ok(alice, "get_run", runId=a_run))["run"]["runId"] == a_run

        for tool in ("get_run", "cancel_run"):
            refused = await error(bob, tool, runId=a_run)
            assert "not found" in refused.lower() and "belongs to another account" in refused, refused
        cancel_path = f"/api/v1/mogplex/runs/{a_run}/cancel"
        assert [r.status for r in emu.emulator.requests if r.path == cancel_path] == [404]  # upstream said so

        # Bob's refused cancel changed nothing: Alice's run is still hers and still running.
        status = (await ok(alice, "get_run", runId=a_run))["run"]["status"]
        assert status in {"pending", "streaming"}, status


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_token_is_rejected_by_upstream(tmp_path: Path, mode: Mode) -> None:
    async with gateway(tmp_path) as (url, _), http_client(url, mode, UNKNOWN_TOKEN) as client:
        assert "401" in await error(client, "list_repos")


@pytest.mark.parametrize("mode", MODES)
async def test_no_bearer_and_no_fallback_is_a_clear_error(tmp_path: Path, mode: Mode) -> None:
    async with gateway(tmp_path) as (url, emu), http_client(url, mode, None) as client:
        message = await error(client, "list_repos")
        assert "Authorization: Bearer" in message
        assert emu.emulator.request_count() == 0


async def test_loopback_bind_may_fall_back_to_the_configured_token(tmp_path: Path) -> None:
    async with gateway(tmp_path, token=DEMO_TOKEN) as (url, _), http_client(url, "legacy", None) as client:
        assert (await ok(client, "list_repos"))["count"] >= 1


async def test_a_public_bind_never_falls_back_to_the_configured_token(tmp_path: Path) -> None:
    public = HttpOptions(host="0.0.0.0", port=0, allowed_hosts=("127.0.0.1",))  # noqa: S104 - configured, not bound
    async with gateway(tmp_path, public, token=DEMO_TOKEN) as (url, emu):
        # Refused at the door (401), before any session exists: see tests/server/transport for the attack versions.
        assert "Authorization: Bearer" in await initialize_error(url, "legacy", None)
        assert emu.emulator.request_count() == 0
        async with http_client(url, "legacy", USER_B_TOKEN) as bob:
            assert (await ok(bob, "list_repos"))["count"] >= 1


async def test_foreign_host_and_origin_are_refused(tmp_path: Path) -> None:
    options = HttpOptions(port=0, allowed_origins=("https://app.example.com",))
    async with gateway(tmp_path, options) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        evil_host = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example:8000"})
        assert evil_host.status_code == 421
        evil_origin = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "https://evil.example"})
        assert evil_origin.status_code == 403
        allowed = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "https://app.example.com"})
        assert allowed.status_code == 200
        local_origin = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "http://localhost:3000"})
        assert local_origin.status_code == 200


async def test_healthz(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        answer = await http.get(url.replace("/mcp", "/healthz"))
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"


@pytest.mark.parametrize("mode", MODES)
async def test_read_only_hides_the_writers_over_http(tmp_path: Path, mode: Mode) -> None:
    async with gateway(tmp_path, read_only=True) as (url, _), http_client(url, mode, DEMO_TOKEN) as client:
        names = await tool_names(client)
        assert not names & WRITERS
        assert (await ok(client, "list_repos"))["count"] >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_stateless_mode_serves_both_eras(tmp_path: Path, mode: Mode) -> None:
    # A run slow enough to be still running when the wait begins on a loaded machine (at the suite's usual 50x
    # it can finish before the wait starts, and a wait on a finished run rightly reports no progress).
    async with (
        gateway(tmp_path, HttpOptions(port=0, stateless=True), emulator=emulator_config(speed=5.0)) as (url, _),
        http_client(url, mode, DEMO_TOKEN) as client,
    ):
        run_id = (await ok(client, "start_run", repoId=REPO_ID, prompt="Stateless start"))["run"]["runId"]
        assert (await ok(client, "get_run", runId=run_id))["run"]["runId"] == run_id
        messages: list[str] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")

        # Progress still streams inside the call's own response, without a session.
        result = await client.call_tool(
            "wait_for_run", {"runId": run_id, "timeoutSeconds": 10}, progress_callback=progress
        )
        assert not result.is_error
        assert messages


def test_a_public_bind_must_name_its_hosts() -> None:
    with pytest.raises(ConfigError, match="--allowed-host"):
        transport_security(HttpOptions(host="0.0.0.0"))  # noqa: S104
    named = transport_security(HttpOptions(host="0.0.0.0", allowed_hosts=("mcp.example.com",)))  # noqa: S104
    assert named.allowed_hosts == ["mcp.example.com", "mcp.example.com:*"]
    assert transport_security(HttpOptions(host="::", allowed_hosts=("*",))).enable_dns_rebinding_protection is False


@pytest.mark.parametrize(
    ("options", "fallback"),
    [
        (HttpOptions(host="127.0.0.1"), True),
        (HttpOptions(host="localhost"), True),
        (HttpOptions(host="::1"), True),
        (HttpOptions(host="127.0.0.1", allowed_hosts=("mcp.example.com",)), False),  # behind a proxy
        (HttpOptions(host="0.0.0.0", allowed_hosts=("mcp.example.com",)), False),  # noqa: S104
        (HttpOptions(host="10.1.2.3", allowed_hosts=("10.1.2.3",)), False),
    ],
)
def test_token_fallback_only_when_every_caller_is_local(options: HttpOptions, fallback: bool) -> None:
    assert http_settings(Settings(token=DEMO_TOKEN), options).http_token_fallback is fallback
