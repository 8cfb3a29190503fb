"""The benchmarks still run: one small fan-out scenario end to end (correctness only, no timing asserts)."""

from __future__ import annotations

import pytest

from bench.fanout_scenarios import Scenario, followed, orchestrated
from bench.report import Section, table

pytestmark = pytest.mark.anyio


async def test_a_watched_run_is_followed_within_the_budget_and_subscribers_hear_of_it() -> None:
    measured = await followed(Scenario(runs=1, waits_per_run=1, subscribers_per_run=1), seconds=5)

    assert measured.upstream.requests > 0, "the follower never asked the emulator about the run"
    assert measured.upstream.rate_limited == 0
    assert measured.upstream.busiest_minute() <= 60
    assert measured.notifications > 0, "the subscriber heard nothing although the run emits an event every 2 s"


async def test_orchestrators_waiting_on_a_set_of_runs_stay_within_the_budget() -> None:
    measured = await orchestrated(2, seconds=4)

    assert measured.upstream.requests > 0, "no follower asked the emulator about the runs"
    assert measured.upstream.rate_limited == 0
    assert measured.upstream.by_kind.get("POST /runs", 0) == 0, "waiting never starts anything"


def test_the_table_shows_every_row_with_its_verdict() -> None:
    section = Section("demo", "Demo", "how")
    section.add("a", "1 ms", "≤ 2 ms", True)
    section.add("b", "3 ms", "≤ 2 ms", False)

    rendered = table([section])

    assert "| Demo | a | 1 ms | ≤ 2 ms | met |" in rendered
    assert "| Demo | b | 3 ms | ≤ 2 ms | **MISS** |" in rendered


async def test_the_definitions_benchmark_measures_both_sizes() -> None:
    from bench import definitions

    section = await definitions.run()

    facing, per_tool, wire = section.rows
    assert facing.met is True, facing.value
    assert "start_run" in per_tool.value and "chars" in wire.value
