"""The emulator's front door: exports, independence from the client, thread mode, config errors, shutdown."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import anyio
import httpx2
import pytest

import mogplex_mcp.emulator as emulator_package
from mogplex_mcp.emulator import (
    DEMO_TOKEN,
    OTHER_USER_TOKEN,
    READ_ONLY_TOKEN,
    Emulator,
    EmulatorConfig,
    EmulatorThread,
    ManualClock,
    running_emulator,
)
from tests.emulator.support import API, start_body

PACKAGE = Path(emulator_package.__file__).parent


def test_the_public_names_are_pinned() -> None:
    assert sorted(emulator_package.__all__) == sorted(
        [
            "AUTOMATION_TOKEN",
            "DEMO_TOKEN",
            "FAULT_KINDS",
            "LEAKED_TOKEN",
            "OTHER_USER_TOKEN",
            "READ_ONLY_TOKEN",
            "SCENARIOS",
            "ConnectionDropped",
            "Emulator",
            "EmulatorConfig",
            "EmulatorHandle",
            "EmulatorThread",
            "ManualClock",
            "RequestRecord",
            "running_emulator",
        ]
    )


def test_the_emulator_never_imports_the_client_or_other_layers() -> None:
    for module in PACKAGE.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("mogplex_mcp.") or name.startswith("mogplex_mcp.emulator"), (
                    f"{module.name} imports {name}: the emulator must speak JSON on its own"
                )


def test_modules_stay_small_and_say_what_they_are() -> None:
    for module in PACKAGE.glob("*.py"):
        text = module.read_text()
        assert len(text.splitlines()) < 400, f"{module.name} is too long; split it by responsibility"
        assert ast.get_docstring(ast.parse(text)), f"{module.name} needs a one-line docstring"


def test_tokens_look_like_pats() -> None:
    for token in (DEMO_TOKEN, READ_ONLY_TOKEN, OTHER_USER_TOKEN):
        assert token.startswith("mog_") and len(token) == 28 and token[4:].isalnum()


def test_thread_mode_serves_synchronous_code_and_stops_on_exit() -> None:
    with EmulatorThread(EmulatorConfig(flavor="observed")) as handle:
        headers = {"Authorization": f"Bearer {handle.token}", "Idempotency-Key": "sync"}
        with httpx2.Client(base_url=handle.base_url, headers=headers, timeout=5) as client:
            started = client.post(f"{API}/runs", json=start_body())
            fetched = client.get(f"{API}/runs/{started.json()['data']['runId']}")
        counted = handle.emulator.request_count()
    assert started.status_code == 202 and fetched.status_code == 200 and counted == 2
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{handle.base_url}{API}/repos", timeout=2)


def test_config_mistakes_are_named() -> None:
    with pytest.raises(ValueError, match="flavor"):
        EmulatorConfig(flavor="production")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="speed"):
        EmulatorConfig(speed=0)
    with pytest.raises(ValueError, match="html_502"):
        Emulator().inject_fault("meteor")
    clock = ManualClock(5)
    clock.advance(1.5)
    assert clock() == clock.now() == 6.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


@pytest.mark.anyio
async def test_leaving_the_server_with_a_stream_open_ends_the_stream_promptly() -> None:
    first_event, stream_closed = anyio.Event(), anyio.Event()
    config, clock = EmulatorConfig(flavor="observed"), ManualClock()

    async def listen(client: httpx2.AsyncClient, url: str) -> None:
        async with client.stream("GET", url) as response:
            async for message in httpx2.EventSource(response):
                assert json.loads(message.data)["id"] == message.id
                first_event.set()
        stream_closed.set()

    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Idempotency-Key": "open-stream"}
    with anyio.fail_after(15):
        async with httpx2.AsyncClient(headers=headers) as client, anyio.create_task_group() as tasks:
            async with running_emulator(config, clock=clock) as handle:
                run = await client.post(f"{handle.base_url}{API}/runs", json=start_body("[scenario:endless] x"))
                stream = f"{handle.base_url}{run.json()['data']['eventsUrl']}/stream"
                clock.advance(5)
                tasks.start_soon(listen, client, stream)
                await first_event.wait()
            await stream_closed.wait()  # the server is gone: its open stream must have ended
    assert stream_closed.is_set()
