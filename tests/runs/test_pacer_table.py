"""Per-token pacers are bounded in count and age (issue 23, #3): a bearer that has not sent a request within the
last minute holds no pacer, and the table never grows with the number of bearers ever seen."""

from __future__ import annotations

import anyio.lowlevel
import pytest

from mogplex_mcp.runs.local import LocalPacer
from mogplex_mcp.runs.pacer import WINDOW_SECONDS

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_pacers_idle_for_a_window_are_forgotten() -> None:
    clock = Clock()
    pacers = LocalPacer(40, clock=clock, sleep=clock.sleep)
    for n in range(2_000):
        await pacers.acquire(f"fp{n}")
    assert pacers.tracked == 2_000, "each sent a request within the minute: all kept (their budgets matter)"
    clock.now += WINDOW_SECONDS
    await pacers.acquire("newcomer")
    assert pacers.tracked == 1, "a minute later their windows are empty: forgotten, nothing lost"


async def test_past_the_cap_idle_pacers_go_and_busy_ones_keep_their_budget() -> None:
    clock = Clock()
    pacers = LocalPacer(2, clock=clock, sleep=clock.sleep, max_pacers=10)
    for n in range(10):
        pacers.for_token(f"idle{n}")  # made, never used
    busy = pacers.for_token("busy")
    await busy.acquire()
    await busy.acquire()
    assert pacers.tracked <= 10
    assert pacers.for_token("busy") is busy and busy.delay_needed() > 0, "its window survived: budget holds"
