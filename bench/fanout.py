"""Follow fan-out: upstream requests and server CPU with 1/10/100 watchers of one run and 1/10/50 runs followed.

Watchers are `wait_for_run` calls plus `mogplex://runs/{id}/events` subscribers (handshake-era
`resources/subscribe`, one session each), all on one streamable-HTTP server process (the gateway case:
many clients, one server). Each scenario gets a fresh emulator (60 requests/min per PAT, like the service)
and a fresh server, so no scenario inherits another's rate-limit window. The naive pattern — each watcher
polling the events endpoint every 1.5 s on its own — is measured against a fresh emulator too.
"""

from __future__ import annotations

from collections.abc import Awaitable

import anyio

from bench.fanout_scenarios import (
    NAIVE_INTERVAL_S,
    ORCHESTRATED_RUNS,
    ORCHESTRATOR_COUNTS,
    PAT_BUDGET_PER_MINUTE,
    RUN_COUNTS,
    WATCHER_COUNTS,
    Scenario,
    Window,
    followed,
    naive,
    orchestrated,
    run_side_by_side,
    watchers,
)
from bench.report import Section
from mogplex_mcp.runs.follower import FollowSettings


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
    ours = await run_side_by_side(scenarios)
    naive_jobs: dict[str, Awaitable[Window]] = {}
    for count in WATCHER_COUNTS:
        naive_jobs[f"watchers {count}"] = naive(1, count, seconds=naive_seconds)
    for runs in RUN_COUNTS[1:]:
        naive_jobs[f"runs {runs}"] = naive(runs, 1, seconds=naive_seconds)
    naive_results = await run_side_by_side(naive_jobs)
    naive_results["runs 1"] = naive_results["watchers 1"]

    _watcher_rows(section, ours, naive_results)
    _run_rows(section, ours, naive_results)
    if with_stream:
        section.add("10 runs followed, observed flavour (upstream event stream)", _ours(ours["stream 10"]))
    _orchestrator_rows(section, ours)
    _explain(section, ours, seconds)
    return section


def _watcher_rows(section: Section, ours: dict[str, Window | str], naive_results: dict[str, Window | str]) -> None:
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


def _run_rows(section: Section, ours: dict[str, Window | str], naive_results: dict[str, Window | str]) -> None:
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
    _explain_orchestrators(section, ours)
    for row in section.misses:
        section.notes.append(
            f"Miss: {row.metric} — {row.value}. A count that grows with watchers or runs means followers are not "
            "shared or the pacer is bypassed; a 429 means some request path does not go through the token's pacer."
        )


def _explain_orchestrators(section: Section, ours: dict[str, Window | str]) -> None:
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


if __name__ == "__main__":
    result = anyio.run(lambda: run(seconds=20, naive_seconds=6, with_stream=True))
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
    print(*result.notes, sep="\n")
