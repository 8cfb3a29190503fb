"""Follow fan-out: upstream requests and server CPU with 1/10/100 watchers of one run and 1/10/50 runs followed.

Watchers are `wait_for_run` calls plus `mogplex://runs/{id}/events` subscribers (handshake-era
`resources/subscribe`, one session each), all on one streamable-HTTP server process (the gateway case:
many clients, one server). Each scenario gets a fresh emulator (60 requests/min per PAT, like the service)
and a fresh server, so no scenario inherits another's rate-limit window. The naive pattern — each watcher
polling the events endpoint every 1.5 s on its own — is measured against a fresh emulator too.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client

from bench.emulator_proc import EmulatorProcess, EmulatorStats, emulator_process
from bench.measure import cpu_seconds
from bench.report import Section
from bench.servers import http_server, server_env
from mogplex_mcp.runs.follower import FollowSettings

PAT_BUDGET_PER_MINUTE = 60
WATCHER_COUNTS = (1, 10, 100)
RUN_COUNTS = (1, 10, 50)
NAIVE_INTERVAL_S = 1.5
WAIT_SESSIONS = 10
ORCHESTRATOR_COUNTS = (1, 10)
ORCHESTRATED_RUNS = 10
EVENTS_URI = "mogplex://runs/{runId}/events"


@dataclass(frozen=True)
class Window:
    """Upstream traffic and server CPU over one observation."""

    seconds: float
    upstream: EmulatorStats
    server_cpu_s: float = 0.0
    steady_cpu_s: float = 0.0  # over the second half of the observation, after set-up
    notifications: int = 0
    not_seen_yet: int = 0  # wait_for_run calls that ended before the run's first poll (budget-bound)

    @property
    def per_minute(self) -> float:
        return self.upstream.requests / self.seconds * 60

    @property
    def steady_cpu_percent(self) -> float:
        return self.steady_cpu_s / (self.seconds / 2) * 100


@dataclass(frozen=True)
class Scenario:
    runs: int
    waits_per_run: int
    subscribers_per_run: int
    flavor: str = "documented"


def watchers(count: int) -> tuple[int, int]:
    """`count` watchers as (wait_for_run calls, subscribers): half each, the odd one a wait."""
    return math.ceil(count / 2), count // 2


async def _wait_loop(client: Client, run_id: str, until: float, not_seen: list[int]) -> None:
    """One watcher: `wait_for_run` again and again (it returns at its timeout) until `until`."""
    while (remaining := until - time.monotonic()) > 1:
        result = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": min(50, remaining)})
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            if "Call wait_for_run again" not in text:
                raise RuntimeError(f"wait_for_run failed during the benchmark: {text[:300]}")
            not_seen[0] += 1  # the follower had no budget for this run's first poll yet: the model calls again


async def _subscribe(stack: AsyncExitStack, url: str, run_id: str, counter: list[int]) -> None:
    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            counter[0] += 1

    client = await stack.enter_async_context(Client(url, mode="legacy", message_handler=on_message))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resources/subscribe is the handshake era's way, deprecated in the modern
        await client.subscribe_resource(EVENTS_URI.replace("{runId}", run_id))


async def followed(scenario: Scenario, *, seconds: float) -> Window:
    """One scenario against a fresh emulator and server, observed for `seconds` from the first watcher on."""
    with (
        emulator_process(rate_limit=PAT_BUDGET_PER_MINUTE, flavor=scenario.flavor) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-fanout-") as tmp,
        http_server(server_env(emulator, Path(tmp))) as served,
    ):
        async with httpx2.AsyncClient(timeout=30) as control:
            run_ids = await emulator.create_runs(control, scenario.runs, "endless")
            notifications, not_seen = [0], [0]
            waits = scenario.waits_per_run * scenario.runs
            async with AsyncExitStack() as stack:
                sessions = [
                    await stack.enter_async_context(Client(served.url, mode="legacy", read_timeout_seconds=120))
                    for _ in range(min(WAIT_SESSIONS, waits))
                ]
                before, cpu_before = await emulator.stats(control, times=True), cpu_seconds(served.pid)
                started = time.monotonic()
                until = started + seconds
                for run_id in run_ids:  # client sessions are entered here, outside the task group below
                    for _ in range(scenario.subscribers_per_run):
                        await _subscribe(stack, served.url, run_id, notifications)
                async with anyio.create_task_group() as tg:
                    for index in range(waits):
                        session = sessions[index % len(sessions)]
                        tg.start_soon(_wait_loop, session, run_ids[index % scenario.runs], until, not_seen)
                    await anyio.sleep(max(0.0, started + seconds / 2 - time.monotonic()))
                    cpu_half = cpu_seconds(served.pid)
                    await anyio.sleep(max(0.0, until - time.monotonic()))
                    after, cpu_after = await emulator.stats(control, times=True), cpu_seconds(served.pid)
                    elapsed = time.monotonic() - started
    return Window(
        seconds=elapsed,
        upstream=after - before,
        server_cpu_s=cpu_after - cpu_before,
        steady_cpu_s=cpu_after - cpu_half,
        notifications=notifications[0],
        not_seen_yet=not_seen[0],
    )


async def _orchestrator(client: Client, run_ids: list[str], until: float) -> None:
    """One orchestrating agent: `wait_for_runs` over the whole set, again and again, until `until`."""
    while (remaining := until - time.monotonic()) > 1:
        arguments = {"runIds": run_ids, "mode": "any", "timeoutSeconds": min(50, remaining)}
        result = await client.call_tool("wait_for_runs", arguments)
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            raise RuntimeError(f"wait_for_runs failed during the benchmark: {text[:300]}")


async def orchestrated(orchestrators: int, *, seconds: float) -> Window:
    """`orchestrators` sessions, each looping wait_for_runs over the same 10 endless runs, on one server."""
    with (
        emulator_process(rate_limit=PAT_BUDGET_PER_MINUTE) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-orchestrators-") as tmp,
        http_server(server_env(emulator, Path(tmp))) as served,
    ):
        async with httpx2.AsyncClient(timeout=30) as control, AsyncExitStack() as stack:
            run_ids = await emulator.create_runs(control, ORCHESTRATED_RUNS, "endless")
            sessions = [
                await stack.enter_async_context(Client(served.url, mode="legacy", read_timeout_seconds=120))
                for _ in range(orchestrators)
            ]
            before, cpu_before = await emulator.stats(control, times=True), cpu_seconds(served.pid)
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for session in sessions:
                    tg.start_soon(_orchestrator, session, run_ids, started + seconds)
                await anyio.sleep(max(0.0, started + seconds / 2 - time.monotonic()))
                cpu_half = cpu_seconds(served.pid)
            after, cpu_after = await emulator.stats(control, times=True), cpu_seconds(served.pid)
            elapsed = time.monotonic() - started
    return Window(elapsed, after - before, cpu_after - cpu_before, cpu_after - cpu_half)


async def _naive_poller(http: httpx2.AsyncClient, emulator: EmulatorProcess, run_id: str, until: float) -> None:
    url = f"{emulator.base_url}/api/v1/mogplex/runs/{run_id}/events"
    while time.monotonic() < until:
        await http.get(url, params={"limit": "200"})  # a 429 is counted, not retried sooner
        await anyio.sleep(NAIVE_INTERVAL_S)


async def naive(runs: int, pollers_per_run: int, *, seconds: float) -> Window:
    """Each watcher polls on its own every 1.5 s: what clients do without a shared follower."""
    with emulator_process(rate_limit=PAT_BUDGET_PER_MINUTE) as emulator:
        limits = httpx2.Limits(max_connections=runs * pollers_per_run + 5)
        headers = {"Authorization": f"Bearer {emulator.token}"}
        async with (
            httpx2.AsyncClient(timeout=30) as control,
            httpx2.AsyncClient(headers=headers, limits=limits, timeout=30) as http,
        ):
            run_ids = await emulator.create_runs(control, runs, "endless")
            before = await emulator.stats(control, times=True)
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for run_id in run_ids:
                    for _ in range(pollers_per_run):
                        tg.start_soon(_naive_poller, http, emulator, run_id, started + seconds)
            after = await emulator.stats(control, times=True)
    return Window(time.monotonic() - started, after - before)


def first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside `exc` (task groups wrap failures in groups)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _all(jobs: dict[str, Awaitable[Window]]) -> dict[str, Window | str]:
    """Run the scenarios side by side (each has its own emulator and server, so they share only the CPUs).

    A scenario that fails is reported by its error text rather than taking the others down with it.
    """
    results: dict[str, Window | str] = {}

    async def one(key: str, job: Awaitable[Window]) -> None:
        try:
            results[key] = await job
        except Exception as exc:  # reported in the table: one broken scenario must not hide the others
            leaf = first_leaf(exc)
            results[key] = f"failed: {type(leaf).__name__}: {str(leaf)[:200]}"

    async with anyio.create_task_group() as tg:
        for key, job in jobs.items():
            tg.start_soon(one, key, job)
    return results


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ours(measured: Window | str) -> str:
    if isinstance(measured, str):
        return measured
    text = (
        f"{measured.upstream.requests} requests in {measured.seconds:.0f} s, busiest 60 s: "
        f"{measured.upstream.busiest_minute()}; {measured.upstream.rate_limited} × 429; server CPU "
        f"{measured.steady_cpu_percent:.1f}% of a core (steady)"
    )
    if measured.not_seen_yet:
        text += f"; {measured.not_seen_yet} waits ended before their run's first poll"
    return text


def _naive(measured: Window | str) -> str:
    if isinstance(measured, str):
        return measured
    return f"{measured.per_minute:.0f} requests/min attempted, {measured.upstream.rate_limited} × 429"


async def run(*, seconds: float, naive_seconds: float, with_stream: bool) -> Section:
    section = Section(
        key="fanout",
        title="Follow fan-out",
        method=(
            "One `serve --transport http` process per scenario, each against its own fresh emulator allowing 60 "
            "requests/min per PAT (as the service does) and serving `endless` runs (an event every 2 s, never "
            "finishing); the scenarios run side by side. Watchers are half `wait_for_run` calls (spread over up to "
            "10 handshake-era sessions, each call re-issued when it returns) and half `mogplex://runs/{id}/events` "
            "subscribers (one handshake-era session each, `resources/subscribe`). Each scenario is observed for "
            f"{seconds:g} s from its first watcher: every request the emulator answered (all endpoints) is "
            "timestamped, and the busiest 60 s sliding window is what the PAT's per-minute limit sees. Server CPU "
            "is the server process's CPU time (/proc) over the second half of the observation, after set-up. "
            "Documented flavour: the upstream has no event stream, so followers poll — the worst case. Naive: each "
            f"watcher polls `GET /runs/{{id}}/events` every {NAIVE_INTERVAL_S:g} s by itself, for {naive_seconds:g} "
            "s against a fresh emulator; refused (429) requests count as attempted. Orchestrators: 1 or 10 "
            "handshake-era sessions on one server, each calling `wait_for_runs` (mode any) over the same 10 "
            "`endless` runs again and again."
        ),
    )
    scenarios: dict[str, Awaitable[Window]] = {}
    for count in WATCHER_COUNTS:
        scenarios[f"watchers {count}"] = followed(Scenario(1, *watchers(count)), seconds=seconds)
    for runs in RUN_COUNTS:
        scenarios[f"runs {runs}"] = followed(Scenario(runs, 1, 0), seconds=seconds)
    if with_stream:
        scenarios["stream 10"] = followed(Scenario(10, 1, 0, "observed"), seconds=seconds)
    for count in ORCHESTRATOR_COUNTS:
        scenarios[f"orchestrators {count}"] = orchestrated(count, seconds=seconds)
    ours = await _all(scenarios)
    naive_jobs: dict[str, Awaitable[Window]] = {}
    for count in WATCHER_COUNTS:
        naive_jobs[f"watchers {count}"] = naive(1, count, seconds=naive_seconds)
    for runs in RUN_COUNTS[1:]:
        naive_jobs[f"runs {runs}"] = naive(runs, 1, seconds=naive_seconds)
    naive_results = await _all(naive_jobs)
    naive_results["runs 1"] = naive_results["watchers 1"]

    for count in WATCHER_COUNTS:
        waits, subscribers = watchers(count)
        measured = ours[f"watchers {count}"]
        received = (
            f"; {measured.notifications} update notifications received"
            if subscribers and isinstance(measured, Window)
            else ""
        )
        section.add(
            f"{_plural(count, 'watcher')} of 1 run ({_plural(waits, 'wait')} + {_plural(subscribers, 'subscriber')})",
            _ours(measured) + received,
        )
        section.add(f"naive polling, {_plural(count, 'watcher')} of 1 run", _naive(naive_results[f"watchers {count}"]))
    first, most = ours["watchers 1"], ours["watchers 100"]
    if isinstance(first, Window) and isinstance(most, Window):
        one, hundred = first.upstream.requests, most.upstream.requests
        section.add(
            "upstream requests, 100 watchers vs 1",
            f"{hundred} vs {one} ({hundred / max(one, 1):.2f}×)",
            "independent of watchers",
            hundred <= one * 1.25 + 3,
        )
    else:
        section.add("upstream requests, 100 watchers vs 1", "not measured (a scenario failed)", "", False)
    for runs in RUN_COUNTS:
        measured = ours[f"runs {runs}"]
        within = (
            isinstance(measured, Window)
            and measured.upstream.busiest_minute() <= PAT_BUDGET_PER_MINUTE
            and measured.upstream.rate_limited == 0
        )
        section.add(
            f"{_plural(runs, 'run')} followed (1 wait each)",
            _ours(measured),
            f"≤ {PAT_BUDGET_PER_MINUTE} in any 60 s, no 429" if runs == 10 else "",
            within if runs == 10 else None,
        )
        section.add(f"naive polling, {_plural(runs, 'run')}", _naive(naive_results[f"runs {runs}"]))
    if with_stream:
        section.add("10 runs followed, observed flavour (upstream event stream)", _ours(ours["stream 10"]))
    _orchestrator_rows(section, ours)
    _explain(section, ours, seconds)
    return section


def _orchestrator_rows(section: Section, ours: dict[str, Window | str]) -> None:
    for count in ORCHESTRATOR_COUNTS:
        noun = _plural(count, "orchestrator")
        section.add(
            f"{noun} × `wait_for_runs` over the same {ORCHESTRATED_RUNS} runs", _ours(ours[f"orchestrators {count}"])
        )
    one, ten = ours["orchestrators 1"], ours["orchestrators 10"]
    metric = f"upstream requests, 10 orchestrators vs 1 (wait_for_runs over {ORCHESTRATED_RUNS} runs)"
    if isinstance(one, Window) and isinstance(ten, Window):
        single, many = one.upstream.requests, ten.upstream.requests
        value = f"{many} vs {single} ({many / max(single, 1):.2f}×)"
        section.add(metric, value, "what one costs", many <= single * 1.25 + 3)
    else:
        section.add(metric, "not measured (a scenario failed)", "", False)


def _explain(section: Section, ours: dict[str, Window | str], seconds: float) -> None:
    section.notes.append(
        "One follower per run is shared by every `wait_for_run` call and every subscription of that run, and all "
        "followers of one token draw from one pacer (40 requests in any 60 s by default, leaving a third of the "
        "PAT's 60 for the model's own tool calls). So the upstream rate depends on neither the number of watchers "
        "nor the number of runs: more runs share the same budget, each polled less often. The pacer is a sliding "
        "window, so its 40 can go out as a burst when many runs start at once; the busiest-60-s column is the "
        "number that matters for the service's limit."
    )
    if seconds < 60:
        section.notes.append(
            f"Observations here last {seconds:g} s, shorter than the 60 s limit window: the busiest-60-s count "
            "covers the whole observation (quick mode)."
        )
    fifty = ours.get("runs 50")
    if isinstance(fifty, Window):
        budget = FollowSettings().requests_per_minute
        section.notes.append(
            f"The price of a fixed budget: 50 runs followed by polling share {budget} requests a minute, so once "
            f"the first burst is spent each run is polled about every {50 * 60 / budget:.0f} s, and a change (or "
            "the end of a run) can take that long to be seen; a first `wait_for_run` may even end before its run was "
            "polled at all (it says so and asks to be called again — counted in the table). Where the upstream "
            "serves the event stream (observed flavour), followers listen instead of polling: one poll and one "
            "stream connection per run, updates as they happen."
        )
    busiest = max(
        (window.upstream.busiest_minute() for window in ours.values() if isinstance(window, Window)), default=0
    )
    budget = FollowSettings().requests_per_minute
    if busiest > budget:
        section.notes.append(
            f"The busiest 60 s at the emulator held up to {busiest} requests although the pacer allows {budget}: "
            "the pacer counts a request when it is sent and frees its slot exactly 60 s later, while the upstream "
            "counts arrivals. A burst sent together is answered over tens of milliseconds on a loaded machine, the "
            "next burst leaves exactly 60 s after the first was sent, and the upstream sees parts of both in one "
            f"60 s. Harmless with {budget} of 60; to make the pacer's promise exact, let a slot expire 60 s after "
            "its answer arrived (or pace over 61 s), and never give followers the whole budget."
        )
    stream_404s = sum(
        window.upstream.by_kind.get("GET /runs/{id}/events/stream", 0)
        for key, window in ours.items()
        if isinstance(window, Window) and not key.startswith("stream")
    )
    if stream_404s:
        section.notes.append(
            f"In the documented flavour (no event stream) the counts include {stream_404s} `GET "
            "/runs/{id}/events/stream` → 404 in all: the 404 is remembered per base URL, but followers that start "
            "together each try the stream once before any of them has learned it."
        )
    one, ten = ours.get("orchestrators 1"), ours.get("orchestrators 10")
    if isinstance(one, Window) and isinstance(ten, Window):
        section.notes.append(
            f"Orchestrators: each `wait_for_runs` call holds the shared follower of each of its runs, so 10 "
            f"orchestrators waiting on the same {ORCHESTRATED_RUNS} runs keep {ORCHESTRATED_RUNS} followers, not "
            f"{10 * ORCHESTRATED_RUNS}, drawing on the token's one pacer: {ten.upstream.requests} upstream requests "
            f"against {one.upstream.requests} for one orchestrator (observation windows of {ten.seconds:.0f} s and "
            f"{one.seconds:.0f} s: each ends when its last call returns). Both are paced: {ORCHESTRATED_RUNS} runs "
            "polled by followers fill the pacer's budget either way; without shared followers each orchestrator "
            "would poll every run itself, like the naive rows above, ten times over."
        )
    for row in section.misses:
        section.notes.append(
            f"Miss: {row.metric} — {row.value}. A count that grows with watchers or runs means followers are not "
            "shared or the pacer is bypassed; a 429 means some request path does not go through the token's pacer."
        )


if __name__ == "__main__":
    result = anyio.run(lambda: run(seconds=20, naive_seconds=6, with_stream=True))
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
    print(*result.notes, sep="\n")
