"""Memory: the server's RSS as runs and events pile up — 1,000 runs known, 100k+ events seen — read from /proc."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
from mcp import Client

from bench.emulator_proc import emulator_process
from bench.measure import peak_rss_mb, rss_mb
from bench.report import Section
from bench.servers import BARE, WIDE_BUDGET, server_env, stdio_server
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.runs.journal import DEFAULT_MAX_RUNS

TARGET_MB = 80.0
EVENTS_PER_RUN = 200  # what one page of the API returns: a follower's first (and, for a finished run, only) poll
CONCURRENCY = 4
FLAT_TOLERANCE_MB = 3.0


@dataclass(frozen=True)
class Checkpoint:
    runs: int
    events_seen: int
    rss_mb: float


async def _visit(client: Client, run_id: str) -> None:
    """What a model does with a finished run: wait on it (a follower polls it once), then read its events."""
    for name, arguments in (
        ("wait_for_run", {"runId": run_id, "timeoutSeconds": 10}),
        ("list_run_events", {"runId": run_id, "limit": EVENTS_PER_RUN, "includePayload": True}),
    ):
        result = await client.call_tool(name, arguments)
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            raise RuntimeError(f"{name} failed during the memory benchmark: {text[:300]}")


async def _visit_all(client: Client, run_ids: list[str]) -> None:
    queue = iter(run_ids)

    async def worker() -> None:
        for run_id in queue:
            await _visit(client, run_id)

    async with anyio.create_task_group() as tg:
        for _ in range(CONCURRENCY):
            tg.start_soon(worker)


async def run(runs: int, checkpoints: tuple[int, ...]) -> Section:
    follow = FollowSettings()
    section = Section(
        key="memory",
        title="Memory",
        method=(
            f"The real server over stdio (`python -m mogplex_mcp serve`) against an emulator holding {runs} finished "
            "`long` runs (500 events each; the API's events page shows the first 200). Driven through the server's "
            f"own code paths, {CONCURRENCY} calls at a time: for each run `wait_for_run` (its follower polls the run "
            f"once: {EVENTS_PER_RUN} events parsed, kept in the follower, the run remembered in the journal), then "
            f"`list_run_events` with `limit={EVENTS_PER_RUN}, includePayload=true` (served from the follower). "
            "RSS (VmRSS) is read from /proc at checkpoints; 'events seen' = events the server parsed from upstream "
            f"answers. Caches are bounded: {follow.max_finished_kept} finished followers (up to "
            f"{follow.max_events_per_run} events each) and {DEFAULT_MAX_RUNS} known runs per token in the journal — "
            f"both full after {max(follow.max_finished_kept, DEFAULT_MAX_RUNS)} runs, so RSS should be flat from there."
        ),
    )
    points: list[Checkpoint] = []
    with (
        emulator_process(rate_limit=0, speed=1000, max_runs=runs + 100) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-mem-") as tmp,
    ):
        async with httpx2.AsyncClient(timeout=60) as control:
            run_ids = await emulator.create_runs(control, runs, "long")
        await anyio.sleep(0.5)  # at speed 1000 every run has finished by now
        env = server_env(emulator, Path(tmp) / "ours")
        async with stdio_server(env, command=BARE) as bare:
            await bare.client.list_tools()
            bare_rss = rss_mb(bare.pid)
        async with stdio_server(env, command=WIDE_BUDGET) as served:
            await served.client.list_tools()
            points.append(Checkpoint(0, 0, rss_mb(served.pid)))
            done = 0
            for mark in checkpoints:
                await _visit_all(served.client, run_ids[done:mark])
                done = mark
                points.append(Checkpoint(mark, mark * EVENTS_PER_RUN, rss_mb(served.pid)))
            peak = peak_rss_mb(served.pid)
    section.add("bare MCPServer, idle after start (context)", f"{bare_rss:.1f} MB")
    for point in points:
        label = "mogplex-mcp idle after start" if point.runs == 0 else f"after {point.runs} runs known"
        events = f", {point.events_seen / 1000:.0f}k events seen" if point.runs else ""
        targeted = point.runs > 0 and (point.events_seen >= 100_000 or point is points[-1])
        section.add(
            f"RSS {label}{events}",
            f"{point.rss_mb:.1f} MB",
            f"≤ {TARGET_MB:.0f} MB" if targeted else "",
            point.rss_mb <= TARGET_MB if targeted else None,
        )
    section.add("peak RSS (VmHWM) over the whole run", f"{peak:.1f} MB")
    _flatness(section, points, max(follow.max_finished_kept, DEFAULT_MAX_RUNS))
    return section


def _flatness(section: Section, points: list[Checkpoint], caches_full_at: int) -> None:
    filled = [point for point in points if point.runs >= caches_full_at * 2]
    if len(filled) < 2:
        section.notes.append("Too few checkpoints past the caches' bound to judge flatness (quick mode).")
        return
    first, last = filled[0], filled[-1]
    growth = last.rss_mb - first.rss_mb
    section.add(
        f"RSS growth from {first.runs} to {last.runs} runs (caches full)",
        f"{growth:+.1f} MB",
        f"flat (≤ +{FLAT_TOLERANCE_MB:.0f} MB)",
        growth <= FLAT_TOLERANCE_MB,
    )
    if growth > FLAT_TOLERANCE_MB:
        section.notes.append(
            f"Miss: RSS still grew by {growth:.1f} MB after the follower and journal caches were full — something "
            "per run is kept without a bound (look at per-run dicts in the follower hub, the resources layer's "
            "subscription maps and the journal's in-memory fallbacks)."
        )
    for row in section.misses:
        if row.metric.startswith("RSS after"):
            section.notes.append(
                f"Miss: {row.metric} = {row.value}. Most of the idle footprint is the SDK's (compare the bare "
                "server); the rest grows with the follower cache (200 finished runs × their events)."
            )


if __name__ == "__main__":
    result = anyio.run(run, 1000, (100, 250, 500, 750, 1000))
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
    print(*result.notes, sep="\n")
