"""Issue 23, finding 10: a bad entry in a run's Redis feed, a newer feed format, a crashing background task.

A replica that reads a run's feed (another replica — here the test — holds the run's lease) skips an entry it
cannot decode, logs it once, and keeps serving; it follows a run itself when the feed is in a format it does
not know; and a crash in a follower's work is restarted instead of ending the server's task group.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from mcp import Client

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.redis.feed_format import encode_update
from mogplex_mcp.runs.store import FeedUpdate
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.state import AppState
from tests.redis_server import RedisServer
from tests.server.harness import FAST_FOLLOW, settings_for, text_of
from tests.server.test_shared_pacer import fresh_database

pytestmark = pytest.mark.anyio

PREFIX = redis_backend.DEFAULT_PREFIX


def v1_entry(update: FeedUpdate) -> dict[str, str]:
    """An entry as replicas before feed versions wrote it: only `u`, the update as JSON."""
    run = update.run.model_dump(mode="json", by_alias=True, exclude_none=True) if update.run else None
    events = [event.model_dump(mode="json", by_alias=True, exclude_none=True) for event in update.events]
    return {"u": json.dumps({"run": run, "events": events, "window": update.window_exhausted})}


def v1_decode(fields: dict[str, str]) -> FeedUpdate:
    """How replicas before feed versions read an entry (their decode_update, verbatim)."""
    data: dict[str, Any] = json.loads(fields["u"])
    run = RunDetail.model_validate(data["run"]) if data.get("run") else None
    events = [RunEvent.model_validate(item) for item in data.get("events") or []]
    return FeedUpdate(run=run, events=events, window_exhausted=bool(data.get("window")))


async def _started_run(client: Client, prompt: str) -> str:
    repos = await client.call_tool("list_repos", {})
    repo = (repos.structured_content or {})["repos"][0]["id"]
    started = await client.call_tool("start_run", {"repoId": repo, "prompt": prompt})
    assert not started.is_error, text_of(started)
    return str((started.structured_content or {})["run"]["runId"])


async def _hold_lease(raw: redis.asyncio.Redis, emu: EmulatorHandle, run_id: str) -> str:
    """Play the run's leader: hold its follow lease, so the replica under test reads the feed."""
    fingerprint = token_fingerprint(emu.token)
    await raw.set(f"{PREFIX}lease:follow:{fingerprint}:{run_id}", "the-test", px=60_000)
    return f"{PREFIX}feed:{fingerprint}:{run_id}"


async def test_a_bad_feed_entry_is_skipped_once_logged_and_the_replica_keeps_serving(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = await fresh_database(redis_server, 9)
    raw = redis.asyncio.Redis.from_url(url, decode_responses=True)
    async with running_emulator(EmulatorConfig(speed=1.0)) as emu:
        settings = settings_for(emu, tmp_path, redis_url=url)
        async with Client(create_server(settings, follow=FAST_FOLLOW)) as client:
            run_id = await _started_run(client, "Feed faults [scenario:endless]")
            feed = await _hold_lease(raw, emu, run_id)
            for bad in ({"u": "{not json"}, {"u": "[1, 2]"}, {"x": "no update field"}, {"v": "two", "u": "{}"}):
                await raw.xadd(feed, bad)  # type: ignore[arg-type]
            running = RunDetail(run_id=run_id, status="running")
            event = RunEvent(id="ev-from-leader", type="log", message="shared by the leader")
            await raw.xadd(feed, v1_entry(FeedUpdate(run=running, events=[event])))  # type: ignore[arg-type]
            done = RunDetail(run_id=run_id, status="success")
            await raw.xadd(feed, {"v": "2", "u": encode_update(FeedUpdate(run=done))})

            with caplog.at_level(logging.WARNING), anyio.fail_after(30):
                waited = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 10})
                assert not waited.is_error, text_of(waited)
                assert (waited.structured_content or {})["run"]["status"] == "success"  # the entries after the bad ones
                events = await client.call_tool("list_run_events", {"runId": run_id})
                assert "shared by the leader" in text_of(events)  # a version-1 entry is read too
                assert not (await client.call_tool("list_repos", {})).is_error  # still serving

    await raw.aclose()
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and run_id in r.getMessage()]
    assert len(skipped) == 1, skipped


async def test_a_feed_in_a_newer_format_makes_the_reader_follow_the_run_itself(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = await fresh_database(redis_server, 10)
    raw = redis.asyncio.Redis.from_url(url, decode_responses=True)
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        settings = settings_for(emu, tmp_path, redis_url=url)
        async with Client(create_server(settings, follow=FAST_FOLLOW)) as client:
            run_id = await _started_run(client, "Newer leader [scenario:success]")
            feed = await _hold_lease(raw, emu, run_id)
            await raw.xadd(feed, {"v": "99", "u": "a format from the future"})
            with anyio.fail_after(30):
                waited = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 20})
            assert not waited.is_error, text_of(waited)
            assert (waited.structured_content or {})["run"]["terminal"], "followed upstream by itself"
    await raw.aclose()


def test_entries_this_version_writes_are_read_by_version_1_replicas() -> None:
    events = [RunEvent(id=f"e{n}", type="log", message="x" * 50_000, payload={"text": "y" * 50_000}) for n in range(3)]
    update = FeedUpdate(run=RunDetail(run_id="r1", status="running"), events=events, window_exhausted=True)
    old = v1_decode({"u": encode_update(update)})
    assert old.run is not None and old.run.status == "running" and old.window_exhausted
    assert [e.id for e in old.events] == ["e0", "e1", "e2"]


async def test_a_crash_in_a_followers_work_is_restarted_and_the_server_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    states: list[AppState] = []
    crashes: list[str] = []

    async def crashing_listener(follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        if not crashes:  # a plug-in's bug, once
            crashes.append(follower.run_id)
            raise RuntimeError("a listener's bug")

    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        server = create_server(settings_for(emu, tmp_path), follow=FAST_FOLLOW, on_state=states.append)
        async with Client(server) as client:
            states[-1].hub.add_listener(crashing_listener)
            run_id = await _started_run(client, "Crash once [scenario:success]")
            with caplog.at_level(logging.ERROR), anyio.fail_after(30):
                while True:
                    waited = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 10})
                    assert not waited.is_error, text_of(waited)
                    if (waited.structured_content or {})["run"]["terminal"]:
                        break
                assert not (await client.call_tool("list_repos", {})).is_error
            assert crashes == [run_id]
            assert states[-1].hub.health.total_crashes == 1
            assert states[-1].hub.health.problems() == []  # a run's follower is not a reason to be unready
    assert any("crashed (RuntimeError)" in r.getMessage() for r in caplog.records)
