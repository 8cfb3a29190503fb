"""Real `mogplex-mcp serve` processes (stdio and HTTP) sharing one state dir, started and stopped by client
disconnect, SIGTERM and SIGKILL while they start, read, list and wait (issue 18): the journal stays whole,
every identical start makes one upstream run, and every run started is listed. The long version is the
`journal_stress` benchmark (bench/journal_stress.py, numbers in docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.journal_stress import STOPS, stress

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(240)
async def test_servers_sharing_one_journal_never_corrupt_it_nor_start_a_run_twice(tmp_path: Path) -> None:
    verdict = await stress(tmp_path, slots=4, seconds=20.0, life=(2.0, 5.0))

    assert verdict.failures() == []
    assert verdict.integrity == ["ok"]
    tally = verdict.tally
    # Enough happened for the checks to mean something: retries across processes, every kind of stop.
    assert tally.identical_starts >= 20, tally
    assert {name.split()[1] for name in tally.servers} == set(STOPS)
    assert {name.split()[0] for name in tally.servers} == {"stdio", "http"}
    assert verdict.replied_runs, tally.start_errors[:5]
    refused = [error for error in tally.start_errors if "journal" in error]
    assert refused == [], "no start was refused for want of the journal"
    assert verdict.upstream_runs <= tally.next_start  # never more runs than different starts
    assert verdict.replied_runs <= verdict.listed_runs
