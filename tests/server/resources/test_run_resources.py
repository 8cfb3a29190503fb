"""Run resources through real MCP clients in both eras, against the emulator on loopback.

Reads (state, event log, transcript), not-found errors, resources/list (newest first, persisted) and its
change notices, 500-event runs with and without the stream. Live updates: `test_resources_live.py`.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged
from mcp_types import ResourceListChangedNotification, ResourceUpdatedNotification, TextResourceContents

from mogplex_mcp.api.client import API_PREFIX
from mogplex_mcp.emulator import LEAKED_TOKEN, EmulatorConfig, EmulatorHandle, ManualClock, running_emulator
from mogplex_mcp.runs.follower import FollowSettings, RunFollower
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.state import AppState
from tests.server.harness import FAST_FOLLOW, MODES, Mode, settings_for

pytestmark = pytest.mark.anyio

WAIT_LIMIT = 20.0


class Inbox:
    """Handshake-era notifications as a client receives them."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self._arrived = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
        elif isinstance(message, ResourceListChangedNotification):
            self.list_changed += 1
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(WAIT_LIMIT):
            while not condition():
                await self._arrived.wait()


@dataclass
class Live:
    """A connected client, the emulator behind the server, and the server's state."""

    client: Client
    emu: EmulatorHandle
    states: list[AppState]
    inbox: Inbox

    @property
    def state(self) -> AppState:
        return self.states[-1]

    async def start(self, scenario: str, prompt: str | None = None) -> str:
        """Start a run (a distinct prompt each time: identical starts are de-duplicated into one run)."""
        prompt = prompt or f"Fix the failing test #{uuid.uuid4().hex[:6]}"
        repos = (await self.client.call_tool("list_repos", {})).structured_content
        assert repos is not None
        arguments = {"repoId": repos["repos"][0]["id"], "prompt": f"{prompt} [scenario:{scenario}]"}
        started = (await self.client.call_tool("start_run", arguments)).structured_content
        assert started is not None, "start_run failed"
        run_id: str = started["run"]["runId"]
        return run_id

    async def read(self, uri: str) -> str:
        result = await self.client.read_resource(uri, cache_mode="bypass")
        content = result.contents[0]
        assert isinstance(content, TextResourceContents)
        return content.text

    async def read_json(self, uri: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(await self.read(uri))
        return document

    async def status(self, run_id: str) -> str:
        status: str = (await self.read_json(f"mogplex://runs/{run_id}"))["run"]["status"]
        return status

    def follower(self, run_id: str) -> RunFollower:
        follower = self.state.hub.get(self.emu.token, run_id)
        assert follower is not None, "no follower for the run"
        return follower

    def requests(self, run_id: str) -> int:
        return self.emu.emulator.request_count(path_prefix=f"{API_PREFIX}/runs/{run_id}")

    def statuses(self, run_id: str, suffix: str = "/events") -> list[int | None]:
        path = f"{API_PREFIX}/runs/{run_id}{suffix}"
        return [record.status for record in self.emu.emulator.log.snapshot() if record.path == path]

    async def subscribe(self, uri: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await self.client.subscribe_resource(uri)

    async def unsubscribe(self, uri: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await self.client.unsubscribe_resource(uri)


@asynccontextmanager
async def emulator(config: EmulatorConfig, clock: ManualClock | None = None) -> AsyncIterator[EmulatorHandle]:
    async with running_emulator(config, clock=clock) as handle:
        yield handle


@asynccontextmanager
async def live(
    tmp_path: Path,
    mode: Mode,
    emu: EmulatorHandle,
    *,
    follow: FollowSettings = FAST_FOLLOW,
    **overrides: Any,
) -> AsyncIterator[Live]:
    """A client of a new server (state in `tmp_path`) on the given emulator."""
    states: list[AppState] = []
    inbox = Inbox()
    server = create_server(settings_for(emu, tmp_path / "state", **overrides), follow=follow, on_state=states.append)
    async with Client(server, mode=mode, message_handler=inbox) as client:
        yield Live(client, emu, states, inbox)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a server-side condition that has no change event (a follower's loop ending, the request log)."""
    with anyio.fail_after(WAIT_LIMIT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the condition itself
            await anyio.sleep(0.01)


def run_lines(transcript: str) -> list[str]:
    """The per-event lines of a transcript (between the header and the outcome)."""
    return [line for line in transcript.splitlines() if line[:2].isdigit() and line[2] == ":"]


# --- reading -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_three_run_resources_are_advertised_as_templates(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig()) as emu, live(tmp_path, mode, emu) as s:
        templates = (await s.client.list_resource_templates()).resource_templates
        advertised = {t.uri_template: t.mime_type for t in templates}
        assert advertised == {
            "mogplex://runs/{runId}": "application/json",
            "mogplex://runs/{runId}/events{?after}": "application/json",
            "mogplex://runs/{runId}/log": "text/plain",
        }
        assert all(t.description for t in templates)
        capabilities = s.client.server_capabilities.resources
        assert capabilities is not None and capabilities.subscribe and capabilities.list_changed


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_a_finished_run_reads_as_state_event_log_and_transcript(tmp_path: Path, mode: Mode, flavor: str) -> None:
    config = EmulatorConfig(flavor=flavor, speed=40.0)  # type: ignore[arg-type]
    async with emulator(config) as emu, live(tmp_path, mode, emu) as s:
        run_id = await s.start("success")
        waited = (await s.client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 15})).structured_content
        assert waited is not None and waited["finished"]

        state = await s.read_json(f"mogplex://runs/{run_id}")
        assert state["run"]["status"] == "success" and state["run"]["pullRequestUrl"].startswith("https://github.com/")
        assert "succeeded" in state["summary"] and state["logUri"] == f"mogplex://runs/{run_id}/log"

        log = await s.read_json(f"mogplex://runs/{run_id}/events")
        upstream = s.emu.emulator.store.get(run_id)
        assert upstream is not None
        assert [e["id"] for e in log["events"]] == [e["id"] for e in upstream.events(s.emu.emulator.clock())]
        assert log["eventCount"] == len(log["events"]) and log["windowExhausted"] is False
        assert "untrusted" in log["untrustedContent"]

        text = await s.read(f"mogplex://runs/{run_id}/log")
        lines = run_lines(text)
        if flavor == "observed":  # a tool's start and finish share a line, and the transcript says so
            assert len(lines) < log["eventCount"] and f"({log['eventCount']} events in {len(lines)} lines" in text
        else:
            assert len(lines) == log["eventCount"]
        assert text.rstrip().splitlines()[-1].startswith(f"Outcome: run {run_id} succeeded; pull request: https://")
        for secret in (LEAKED_TOKEN, s.emu.token, "ghp_FakeGithubToken"):
            assert secret not in text and secret not in json.dumps(log), "a secret reached a resource"
        assert "[redacted]" in text


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_foreign_and_malformed_runs_are_clearly_not_found(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig()) as emu, live(tmp_path, mode, emu) as s:
        foreign = str(uuid.uuid4())
        for suffix in ("", "/events", "/log"):
            with pytest.raises(MCPError) as missing:
                await s.read(f"mogplex://runs/{foreign}{suffix}")
            assert missing.value.code == -32602
            assert f"Run {foreign} was not found" in missing.value.message
        before = s.emu.emulator.request_count()
        with pytest.raises(MCPError) as malformed:
            await s.read("mogplex://runs/not-a-run-id/log")
        assert malformed.value.code == -32602 and "UUID" in malformed.value.message
        assert s.emu.emulator.request_count() == before, "a malformed runId reached the upstream"


@pytest.mark.parametrize("mode", MODES)
async def test_reading_without_a_token_says_how_to_set_one(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig()) as emu, live(tmp_path, mode, emu, token=None) as s:
        with pytest.raises(MCPError) as caught:
            await s.read(f"mogplex://runs/{uuid.uuid4()}")
        assert "MOGPLEX_TOKEN" in caught.value.message
        assert (await s.client.list_resources()).resources == []


# --- resources/list ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_runs_list_is_newest_first_and_survives_a_restart(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig()) as emu:
        async with live(tmp_path, mode, emu) as s:
            started = [await s.start("success", prompt=f"Task number {n}") for n in range(3)]
            listed = (await s.client.list_resources()).resources
            assert [r.uri for r in listed] == [f"mogplex://runs/{run_id}" for run_id in reversed(started)]
            assert listed[0].title is not None and listed[0].title.startswith("Task number 2")
        async with live(tmp_path, mode, emu) as again:
            relisted = (await again.client.list_resources()).resources
            assert [r.uri for r in relisted] == [r.uri for r in listed]


async def test_a_new_run_announces_a_list_change_in_the_handshake_era(tmp_path: Path) -> None:
    async with emulator(EmulatorConfig()) as emu, live(tmp_path, "legacy", emu) as s:
        await s.start("success")
        await s.inbox.wait(lambda: s.inbox.list_changed >= 1)


async def test_a_new_run_announces_a_list_change_to_listeners(tmp_path: Path) -> None:
    async with (
        emulator(EmulatorConfig()) as emu,
        live(tmp_path, "auto", emu) as s,
        s.client.listen(resources_list_changed=True) as changes,
    ):
        await s.start("success")
        with anyio.fail_after(WAIT_LIMIT):
            assert await anext(changes) == ResourcesListChanged()


# --- past 200 events ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_500_event_run_is_fully_readable_through_the_stream(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig(flavor="observed", speed=50.0)) as emu, live(tmp_path, mode, emu) as s:
        followed, cold = await s.start("long"), await s.start("long")
        async with AsyncExitStack() as stack:
            uri = f"mogplex://runs/{followed}"
            if mode == "legacy":
                await s.subscribe(uri)
            else:
                await stack.enter_async_context(s.client.listen(resource_subscriptions=[uri]))
            follower = s.follower(followed)
            await until(lambda: follower.done and not follower.active)

        # `cold` started a moment after `followed`: make sure it has finished too (get_run follows nothing).
        async def cold_finished() -> bool:
            got = (await s.client.call_tool("get_run", {"runId": cold})).structured_content
            return got is not None and got["run"]["terminal"] is True

        with anyio.fail_after(WAIT_LIMIT):
            while not await cold_finished():  # noqa: ASYNC110 - polling the upstream is the point here
                await anyio.sleep(0.05)
        for run_id in (followed, cold):  # `cold` was never followed: its read replays the stream once
            log = await s.read_json(f"mogplex://runs/{run_id}/events")
            assert log["eventCount"] == 500 and log["windowExhausted"] is False and log["note"] is None
            ids = [event["id"] for event in log["events"]]
            assert len(ids) < 500 and log["nextUri"], "the event log is paged, like results"
            while log["nextUri"]:  # every event, once, page by page
                log = await s.read_json(log["nextUri"])
                ids += [event["id"] for event in log["events"]]
            assert len(ids) == len(set(ids)) == 500
            text = await s.read(f"mogplex://runs/{run_id}/log")
            assert len(text) < 16_000 and "first 200 events" not in text
            assert 0 < len(run_lines(text)) < 500 and "earlier lines (of 500 events) not shown" in text
            assert "pull request: https://" in text.rstrip().splitlines()[-1]
        listed = (await s.client.call_tool("list_run_events", {"runId": followed, "limit": 200})).structured_content
        assert listed is not None and listed["hasMore"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_without_the_stream_a_500_event_run_is_honestly_cut_at_200(tmp_path: Path, mode: Mode) -> None:
    async with emulator(EmulatorConfig(flavor="documented", speed=50.0)) as emu, live(tmp_path, mode, emu) as s:
        run_id = await s.start("long")
        await s.client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 20})
        log = await s.read_json(f"mogplex://runs/{run_id}/events")
        assert log["eventCount"] == 200 and log["windowExhausted"] is True
        assert "first 200 events" in log["note"]
        text = await s.read(f"mogplex://runs/{run_id}/log")
        assert len(run_lines(text)) == 200 and "first 200 events" in text
