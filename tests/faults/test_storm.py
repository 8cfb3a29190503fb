"""No duplicate run, ever: over a thousand logical starts under mixed upstream faults, one run each.

Seeded: set MOGPLEX_STORM_SEED to replay a failing storm exactly (fault order still varies with timing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mogplex_mcp.emulator import EmulatorConfig
from tests.faults.storm import start_storm
from tests.faults.support import RecordingTransport, duplicate_runs, prompt_of, served

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("MOGPLEX_STORM_SEED", "20260728"))
STARTS = 1_000
# Limits off (the storm is about faults, not quotas); room for every run, so no key is ever evicted.
STORM_UPSTREAM = EmulatorConfig(speed=50.0, rate_limit_per_minute=0, start_limits=(0, 0, 0), max_runs=10 * STARTS)
# Small budgets: a hung or slow attempt costs a quarter of a second, a failed call under two seconds.
# One host's 64 parallel starts on one token: it gets the whole request pool (the per-token share is for
# gateways with many users; here it would only turn hung slots into queueing, which is not what is measured).
STORM_SETTINGS: dict[str, Any] = {
    "retry_budget_seconds": 1.5,
    "read_timeout": 0.25,
    "max_retries": 2,
    "upstream_per_token": 20,
}


@pytest.mark.timeout(300)
async def test_a_thousand_starts_under_mixed_faults_make_one_run_each(tmp_path: Path) -> None:
    wire = RecordingTransport()
    async with served(tmp_path, "auto", config=STORM_UPSTREAM, transport=wire, **STORM_SETTINGS) as s:
        outcome = await start_storm(s, seed=SEED, starts=STARTS)
        emu = s.emulator.emulator
        report = duplicate_runs(emu)
        faulted = sum(1 for r in emu.requests if r.fault is not None)

    context = f"seed {SEED}: {outcome.summary()}; {faulted} faulted upstream requests"
    assert not outcome.failed_prompts, context
    assert len(outcome.run_by_prompt) == STARTS
    assert report.clean, f"{context}\nduplicates: {report.duplicates}\nuntraced: {report.untraced_runs}"
    assert len(report.runs_by_request) == STARTS and len(emu.run_ids()) == STARTS
    for fingerprint, runs in report.runs_by_request.items():
        assert outcome.run_by_prompt[prompt_of(fingerprint)] in runs, "the host was told another run than it made"
    keys = wire.keys_by_prompt()
    assert all(len(k) == 1 for k in keys.values()), "a logical start was sent under more than one key"
    # The storm really stormed: faults were taken, tool calls failed and were retried, replays answered them.
    assert faulted >= STARTS // 2 and outcome.tool_errors > 0 and outcome.replays_seen > 0, context
    assert sum(outcome.faults_armed.values()) >= STARTS
