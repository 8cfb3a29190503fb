"""Protocol honesty over streamable HTTP (issue 21 item 10): advertise only what the mode delivers, and answer
malformed or unknown requests with the JSON-RPC error that says what is wrong — never silence, never a stream
on which nothing will arrive, never a tool result standing in for a protocol error."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.server.transport.support import (
    INITIALIZE,
    INITIALIZED,
    MCP_HEADERS,
    PUBLIC,
    bearer,
    rpc_result,
    served,
)

pytestmark = pytest.mark.anyio

STATELESS = dataclasses.replace(PUBLIC, stateless=True)
RUN_URI = "mogplex://runs/8f3a2b1c-1234-4abc-9def-1234567890ab"


def _rpc(method: str, params: dict[str, Any] | None = None, request_id: Any = 9) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


async def _handshake(http: httpx2.AsyncClient, url: str, token: str) -> tuple[dict[str, str], dict[str, Any]]:
    """initialize + initialized; the headers later requests carry, and the server's capabilities."""
    opened = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(token)})
    assert opened.status_code == 200, opened.text
    headers = {**MCP_HEADERS, **bearer(token), "MCP-Protocol-Version": "2025-11-25"}
    if session_id := opened.headers.get("mcp-session-id"):
        headers["Mcp-Session-Id"] = session_id
    await http.post(url, json=INITIALIZED, headers=headers)
    capabilities: dict[str, Any] = rpc_result(opened)["result"]["capabilities"]
    return headers, capabilities


async def test_stateless_mode_advertises_and_serves_no_notifications(tmp_path: Path) -> None:
    async with served(tmp_path, STATELESS) as s, httpx2.AsyncClient(timeout=10) as http:
        headers, capabilities = await _handshake(http, s.url, s.emu.token)
        assert capabilities["resources"].get("subscribe") is False, capabilities
        assert capabilities["resources"].get("listChanged") is False, capabilities
        stream = await http.get(s.url, headers={**headers, "Accept": "text/event-stream"})
        assert stream.status_code == 405 and stream.headers["allow"] == "POST", stream.text
        refused = rpc_result(
            await http.post(s.url, json=_rpc("resources/subscribe", {"uri": RUN_URI}), headers=headers)
        )
        assert "error" in refused and "stateless" in refused["error"]["message"], refused


async def test_a_stateful_server_still_advertises_what_it_delivers(tmp_path: Path) -> None:
    async with served(tmp_path) as s, httpx2.AsyncClient(timeout=10) as http:
        _, capabilities = await _handshake(http, s.url, s.emu.token)
    assert capabilities["resources"]["subscribe"] is True and capabilities["resources"]["listChanged"] is True


@pytest.mark.parametrize("options", [PUBLIC, STATELESS], ids=["stateful", "stateless"])
async def test_malformed_and_unknown_requests_get_the_error_that_names_the_problem(
    tmp_path: Path, options: Any
) -> None:
    async with served(tmp_path, options) as s, httpx2.AsyncClient(timeout=10) as http:
        headers, _ = await _handshake(http, s.url, s.emu.token)
        null_id = await http.post(s.url, json=_rpc("tools/list", request_id=None), headers=headers)
        assert null_id.status_code == 400 and "id" in rpc_result(null_id)["error"]["message"], null_id.text

        unknown = rpc_result(await http.post(s.url, json=_rpc("tools/call", {"name": "nope"}), headers=headers))
        assert unknown["error"]["code"] == -32602, unknown
        assert "nope" in unknown["error"]["message"] and "start_run" in unknown["error"]["message"]

        version = await http.post(
            s.url, json=_rpc("tools/list"), headers={**headers, "MCP-Protocol-Version": "1999-01-01"}
        )
        message = rpc_result(version)["error"]["message"]
        assert version.status_code == 400 and "Unsupported MCP-Protocol-Version" in message and "2025-11-25" in message

        for method in ("tools/list", "prompts/list", "resources/list"):
            paged = rpc_result(await http.post(s.url, json=_rpc(method, {"cursor": "zzz"}), headers=headers))
            assert paged.get("error", {}).get("code") == -32602, f"{method}: {paged}"
    assert s.emu.emulator.request_count("POST") == 0, "nothing reached Mogplex"
