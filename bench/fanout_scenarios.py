"""Follow fan-out scenarios: watchers, runs and orchestrators on one HTTP server, and naive pollers, measured.

Each scenario gets a fresh emulator (60 requests/min per PAT, like the service) and a fresh server, so no
scenario inherits another's rate-limit window. `fanout.py` runs them and writes the report.
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
from bench.servers import http_server, server_env

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


async def run_side_by_side(jobs: dict[str, Awaitable[Window]]) -> dict[str, Window | str]:
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
