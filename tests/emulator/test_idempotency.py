"""Idempotency-Key: replays with current state, conflicts, concurrency, failed queueing, keys that never expire."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import EmulatorConfig, ManualClock
from tests.emulator.support import API, error_of, served, start_body

pytestmark = pytest.mark.anyio
NO_LIMITS = EmulatorConfig(rate_limit_per_minute=0, start_limits=(0, 0, 0))


async def test_same_key_and_body_replays_the_same_run_with_its_current_state() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            first = (await api.start(key="key-1")).json()["data"]
            clock.advance(3600)  # keys never expire
            replay = (await api.start(key="key-1")).json()["data"]
            runs = api.handle.emulator.run_ids()
    assert first["replayed"] is False and replay["replayed"] is True
    assert replay["runId"] == first["runId"] and runs == [first["runId"]]
    assert first["status"] == "pending" and replay["status"] == "success"


async def test_bodies_that_normalize_alike_replay() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            first = await api.start("Fix it", key="k", harness="codex")
            again = await api.start("  Fix it\n", key="k", createBranch=False)
    assert again.status_code == 202 and again.json()["data"]["replayed"] is True
    assert again.json()["data"]["runId"] == first.json()["data"]["runId"]


async def test_same_key_with_a_different_body_is_an_idempotency_conflict() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            await api.start("Fix it", key="k")
            other = await api.start("Fix something else", key="k")
            count = len(api.handle.emulator.run_ids())
    assert error_of(other) == (409, "IDEMPOTENCY_CONFLICT")
    assert count == 1


async def test_concurrent_starts_with_one_key_make_one_run() -> None:
    answers: list[httpx2.Response] = []
    with anyio.fail_after(20):
        async with served(NO_LIMITS) as api:

            async def start() -> None:
                answers.append(await api.start("Same work", key="shared-key"))

            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(start)
            runs = api.handle.emulator.run_ids()
    assert len(runs) == 1
    assert {response.json()["data"]["runId"] for response in answers} == set(runs)
    assert sorted(response.json()["data"]["replayed"] for response in answers) == [False] + [True] * 19


async def test_a_failed_queueing_is_stored_under_its_key() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            failed = await api.start("[scenario:queue_failure] x", key="k")
            replay = await api.start("[scenario:queue_failure] x", key="k")
            fresh = await api.start("x", key="k2")
            runs = api.handle.emulator.run_ids()
    assert error_of(failed) == (500, "INTERNAL_ERROR")
    assert replay.status_code == 202
    data = replay.json()["data"]
    assert data["replayed"] is True and data["status"] == "failed" and data["error"]
    assert fresh.json()["data"]["status"] == "pending"
    assert len(runs) == 2


async def test_replays_spend_the_start_budget() -> None:
    clock = ManualClock()
    config = EmulatorConfig(rate_limit_per_minute=0, start_limits=(2, 30, 150))
    with anyio.fail_after(10):
        async with served(config, clock=clock) as api:
            await api.start(key="k")
            clock.advance(10)
            await api.start(key="k")
            refused = await api.start(key="k")
    assert error_of(refused) == (429, "RATE_LIMITED")
    assert refused.headers["retry-after"] == "50"


async def test_the_request_log_shows_keys_and_never_tokens() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            await api.start(key="visible-key")
            await api.client.post(f"{API}/runs", json=start_body(), headers={"Authorization": ""})
            records = list(api.handle.emulator.requests)
            listed = (await api.client.get("/_emulator/requests")).text
    assert [(record.idempotency_key, record.has_auth, record.status) for record in records] == [
        ("visible-key", True, 202),
        (None, False, 401),
    ]
    assert api.handle.token not in listed and "visible-key" in listed
