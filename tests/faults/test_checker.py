"""Tests of the tests: the no-duplicate checks catch a client that makes a new Idempotency-Key per retry.

A suite that cannot fail proves nothing. Here a deliberately broken key policy — a fresh key on each
attempt, driven through MogplexClient's public `idempotency_key` argument or the start_run tool's
`idempotencyKey` — must make the checker report duplicates, and the correct policy must not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mogplex_mcp.api import MogplexClient, RetryPolicy
from mogplex_mcp.api.errors import UpstreamConnectError
from mogplex_mcp.api.models import StartRunRequest
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from tests.faults.storm import prompt_for, start_storm
from tests.faults.support import RUNS_PATH, RecordingTransport, duplicate_runs, prompt_of, served

pytestmark = pytest.mark.anyio

NO_LIMITS = EmulatorConfig(speed=50.0, rate_limit_per_minute=0, start_limits=(0, 0, 0))
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"


async def start_with_key_policy(emu: EmulatorHandle, keys: list[str | None], *, max_retries: int) -> None:
    """One logical start; each attempt after a dropped answer uses the next key from `keys`."""
    request = StartRunRequest.model_validate({"repoId": REPO_ID, "prompt": "Rename the config loader"})
    policy = RetryPolicy(max_retries=max_retries, base_delay=0.01, budget_seconds=5.0)
    async with MogplexClient(base_url=emu.base_url, token=emu.token, retry=policy) as client:
        for key in keys:
            try:
                await client.start_run(request, idempotency_key=key)
            except UpstreamConnectError:
                continue
            return
    raise AssertionError("every attempt failed")


async def test_a_new_key_per_attempt_is_reported_as_a_duplicate_run() -> None:
    async with running_emulator(NO_LIMITS) as emu:
        emu.emulator.inject_fault("drop_after_commit", count=2, method="POST", path=RUNS_PATH)
        await start_with_key_policy(emu, ["fresh-1", "fresh-2", "fresh-3"], max_retries=0)
        report = duplicate_runs(emu.emulator)
    assert not report.clean
    [(fingerprint, runs)] = report.duplicates.items()
    assert prompt_of(fingerprint) == "Rename the config loader" and len(runs) == 3


@pytest.mark.parametrize(
    ("keys", "max_retries"),
    [(["same-key"] * 3, 0), ([None], 2)],
    ids=["caller-reuses-its-key", "client-retries-with-its-own-key"],
)
async def test_one_key_for_every_attempt_is_reported_clean(keys: list[str | None], max_retries: int) -> None:
    async with running_emulator(NO_LIMITS) as emu:
        emu.emulator.inject_fault("drop_after_commit", count=2, method="POST", path=RUNS_PATH)
        await start_with_key_policy(emu, keys, max_retries=max_retries)
        report = duplicate_runs(emu.emulator)
        assert emu.emulator.request_count("POST", RUNS_PATH) == 3
    assert report.clean and len(report.runs_by_request) == 1


async def test_the_storm_fails_for_a_host_that_makes_a_new_key_per_call(tmp_path: Path) -> None:
    """The storm's own assertions, on a broken host: fresh idempotencyKey per call and no client retries."""
    wire = RecordingTransport()
    async with served(tmp_path, "auto", config=NO_LIMITS, transport=wire, retry_budget_seconds=1.0, max_retries=0) as s:
        s.emulator.emulator.inject_fault("drop_after_commit", count=5, method="POST", path=RUNS_PATH)
        outcome = await start_storm(s, seed=7, starts=30, concurrency=6, fresh_key_per_call=True)
        report = duplicate_runs(s.emulator.emulator)
    assert not outcome.failed_prompts
    assert report.duplicates, "the checker missed duplicates made by a new key per call"
    assert any(len(keys) > 1 for keys in wire.keys_by_prompt().values())
    assert {prompt_of(f) for f in report.duplicates} <= {prompt_for(7, i) for i in range(30)}
