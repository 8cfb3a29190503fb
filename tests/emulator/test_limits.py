"""Rate limits on the emulator clock: the per-PAT window and the run-start budget, made small for tests."""

from __future__ import annotations

import anyio
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, READ_ONLY_TOKEN, EmulatorConfig, ManualClock
from tests.emulator.support import API, error_of, served

pytestmark = pytest.mark.anyio
SECOND_WRITER = "mog_SecondWriter000000000000000"


async def test_per_pat_window_refuses_with_retry_after_60_and_reopens() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(EmulatorConfig(rate_limit_per_minute=3), clock=clock) as api:
            allowed = [(await api.client.get(f"{API}/repos")).status_code for _ in range(3)]
            await api.client.get(f"{API}/repos", headers={"Authorization": ""})  # no PAT: not counted
            refused = await api.client.get(f"{API}/repos")
            other_pat = await api.client.get(f"{API}/repos", headers={"Authorization": f"Bearer {READ_ONLY_TOKEN}"})
            clock.advance(59)
            still = await api.client.get(f"{API}/repos")
            clock.advance(1)
            reopened = await api.client.get(f"{API}/repos")
    assert allowed == [200, 200, 200]
    assert error_of(refused) == (429, "RATE_LIMITED") and refused.headers["retry-after"] == "60"
    assert other_pat.status_code == 200 and still.status_code == 429 and reopened.status_code == 200


async def test_zero_disables_the_per_pat_limit() -> None:
    with anyio.fail_after(20):
        async with served(EmulatorConfig(rate_limit_per_minute=0)) as api:
            statuses = {(await api.client.get(f"{API}/repos")).status_code for _ in range(80)}
    assert statuses == {200}


async def test_start_budget_per_minute_and_hour_with_computed_retry_after() -> None:
    clock = ManualClock()
    config = EmulatorConfig(rate_limit_per_minute=0, start_limits=(2, 3, 150))
    with anyio.fail_after(10):
        async with served(config, clock=clock) as api:
            first = [(await api.start(f"job {n}")).status_code for n in range(2)]
            clock.advance(15)
            per_minute = await api.start("job 3")
            clock.advance(45)
            third = await api.start("job 3")
            per_hour = await api.start("job 4")
    assert first == [202, 202] and third.status_code == 202
    assert error_of(per_minute) == (429, "RATE_LIMITED") and per_minute.headers["retry-after"] == "45"
    assert error_of(per_hour) == (429, "RATE_LIMITED") and per_hour.headers["retry-after"] == "3540"


async def test_start_budget_is_spent_before_validation_and_per_token() -> None:
    tokens = {DEMO_TOKEN: frozenset({"read", "write"}), SECOND_WRITER: frozenset({"read", "write"})}
    config = EmulatorConfig(rate_limit_per_minute=0, start_limits=(2, 30, 150), tokens=tokens)
    with anyio.fail_after(10):
        async with served(config, clock=ManualClock()) as api:
            invalid = [(await api.start("x", harness="nope")).status_code for _ in range(2)]
            valid = await api.start("x")
            other = await api.start("x", token=SECOND_WRITER)
    assert invalid == [400, 400]
    assert error_of(valid) == (429, "RATE_LIMITED") and int(valid.headers["retry-after"]) >= 1
    assert other.status_code == 202
