"""Memory: the server's RSS as runs and events pile up — 1,000 runs known, 100k+ events seen — read from /proc."""

from __future__ import annotations

import gc
import json
import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
from mcp import Client

from bench.emulator_proc import emulator_process
from bench.measure import peak_rss_mb, rss_mb
from bench.report import Section
from bench.servers import BARE, WIDE_BUDGET, server_env, stdio_server
from mogplex_mcp.api.models import EventPage
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.runs.store import DEFAULT_MAX_RUNS

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


async def event_sizes(http: httpx2.AsyncClient, base_url: str, token: str, run_id: str) -> tuple[float, float]:
    """Bytes per event of one events page: as the server keeps them (parsed models) and as JSON on the wire."""
    response = await http.get(
        f"{base_url}/api/v1/mogplex/runs/{run_id}/events",
        params={"limit": str(EVENTS_PER_RUN)},
        headers={"Authorization": f"Bearer {token}"},
    )
    data = response.json()["data"]
    count = len(data["events"])
    gc.collect()
    tracemalloc.start()
    try:
        page = EventPage.model_validate(data)
        parsed = tracemalloc.get_traced_memory()[0]
        del page
        gc.collect()
        tracemalloc.reset_peak()
        floor = tracemalloc.get_traced_memory()[0]
        packed = json.dumps(data["events"], separators=(",", ":")).encode()
        compact = tracemalloc.get_traced_memory()[0] - floor
        del packed
    finally:
        tracemalloc.stop()
    return parsed / count, compact / count


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
            parsed_bytes, json_bytes = await event_sizes(control, emulator.base_url, emulator.token, run_ids[0])
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
    _explain(section, points, bare_rss, parsed_bytes, json_bytes, follow)
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


def _explain(
    section: Section,
    points: list[Checkpoint],
    bare_rss: float,
    parsed_bytes: float,
    json_bytes: float,
    follow: FollowSettings,
) -> None:
    idle, last = points[0], points[-1]
    retained = min(last.runs, follow.max_finished_kept) * EVENTS_PER_RUN
    per_event_kb = (last.rss_mb - idle.rss_mb) * 1024 / max(retained, 1)
    worst_gb = follow.max_finished_kept * follow.max_events_per_run * per_event_kb / 1024 / 1024
    section.notes.append(
        f"What the memory is: the bare SDK server alone sits at {bare_rss:.0f} MB idle, so the target leaves about "
        f"{80 - bare_rss:.0f} MB for everything of ours. Ours idles at {idle.rss_mb:.0f} MB. Then the follower cache "
        f"fills: {follow.max_finished_kept} finished followers × {EVENTS_PER_RUN} events = {retained // 1000}k events "
        f"kept, about {per_event_kb:.1f} KB of RSS per kept event ({parsed_bytes:.0f} B per event as parsed "
        f"`RunEvent` models by tracemalloc, against {json_bytes:.0f} B as compact JSON), and RSS stops growing once "
        "the caches are full: flat, as designed, but at a level set by how many events the caches may hold."
    )
    section.notes.append(
        "Counts are bounded, bytes are not: a follower keeps up to "
        f"{follow.max_events_per_run} events (the event stream delivers past the API's first 200), and "
        f"{follow.max_finished_kept} finished followers are kept, so the worst case is about "
        f"{follow.max_finished_kept} × {follow.max_events_per_run} × {per_event_kb:.1f} KB ≈ {worst_gb:.1f} GB "
        "for a server that has streamed many long runs."
    )
    section.notes.append(
        "Finished, unwatched followers are a cache bounded by events held (`FollowSettings.max_idle_events`, "
        "2,000 by default), not only by count: that is what keeps RSS flat. Each kept event costs about "
        f"{parsed_bytes:.0f} B parsed against ~{json_bytes:.0f} B as compact JSON; keeping finished runs' events "
        f"as JSON would cut the cache about {parsed_bytes / max(json_bytes, 1):.0f}× and allow a larger budget in "
        "the same memory. Most of the total is the bare SDK server itself (see its idle RSS above)."
    )
    if any(row.met is False for row in section.rows):
        section.notes.append(
            "Miss — what would close it: a smaller `max_idle_events`, or finished runs' events kept as compact JSON."
        )


if __name__ == "__main__":
    result = anyio.run(run, 1000, (100, 250, 500, 750, 1000))
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
    print(*result.notes, sep="\n")
