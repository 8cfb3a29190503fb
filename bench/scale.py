"""Scale-out: identical starts alternating across 3 `--stateless` replicas on one Redis, under upstream faults;
and the upstream cost of many watchers of the same runs spread over 1 or 3 replicas.

The number that matters is runs created upstream: a retried start must never become a second paid run, on
whichever replica the retry lands. The control is the same replicas without Redis (each has its own journal).
For watchers, it is the requests the upstream answers: with Redis one replica follows each run, the others read
its feed, so 3 replicas should cost what 1 does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client

from bench.emulator_proc import EmulatorProcess, emulator_process
from bench.measure import percentile
from bench.redis_proc import redis_process
from bench.report import Section
from bench.servers import HttpServer, http_server, server_env
from bench.throughput import WARMUP_S, Load, measure

REPLICAS = 3
RUNS_PATH = "/api/v1/mogplex/runs"
FAULT_EVERY = 10  # rounds: one dropped-after-commit POST and one 500 per this many rounds of starts
CONTROL_STARTS = 30
WATCHED_RUNS = 10
WATCHERS_PER_RUN = 30
THROUGHPUT_CLIENTS = 10


@contextmanager
def replica(emulator: EmulatorProcess, state_dir: Path, redis_url: str | None) -> Iterator[HttpServer]:
    """One `serve --transport http --stateless` process (on Redis when `redis_url` is given)."""
    env = server_env(emulator, state_dir)
    if redis_url is not None:
        env["MOGPLEX_REDIS_URL"] = redis_url
    with http_server(env, args=("--stateless",)) as served:
        yield served


async def _inject(http: httpx2.AsyncClient, emulator: EmulatorProcess, kind: str) -> None:
    fault = {"kind": kind, "count": 1, "method": "POST", "path": RUNS_PATH}
    (await http.post(f"{emulator.base_url}/_emulator/faults", json=fault)).raise_for_status()


async def _runs_created(http: httpx2.AsyncClient, emulator: EmulatorProcess) -> int:
    response = await http.get(f"{emulator.base_url}/_emulator/runs")
    response.raise_for_status()
    return len(response.json()["data"]["runs"])


async def _starts(urls: list[str], emulator: EmulatorProcess, starts: int, prompt: str) -> dict[str, Any]:
    """`starts` identical start_run calls, one per replica at a time; faults armed every few rounds."""
    outcome: dict[str, Any] = {"ok": 0, "failed": 0, "run_ids": set()}
    async with AsyncExitStack() as stack, httpx2.AsyncClient(timeout=30) as http:
        clients = [await stack.enter_async_context(Client(url, mode="auto")) for url in urls]
        repo = (await clients[0].call_tool("list_repos", {})).structured_content or {}
        arguments = {"repoId": repo["repos"][0]["id"], "prompt": prompt}

        async def one(client: Client) -> None:
            result = await client.call_tool("start_run", arguments)
            if result.is_error or result.structured_content is None:
                outcome["failed"] += 1
            else:
                outcome["ok"] += 1
                outcome["run_ids"].add(result.structured_content["run"]["runId"])

        began = time.perf_counter()
        for round_number in range(-(-starts // len(clients))):
            if round_number % FAULT_EVERY == 1:
                await _inject(http, emulator, "drop_after_commit")
            if round_number % FAULT_EVERY == 6:
                await _inject(http, emulator, "internal_500")
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(one, client)
        outcome["seconds"] = time.perf_counter() - began
        outcome["runs"] = await _runs_created(http, emulator)
    return outcome


async def _scenario(starts: int, redis: bool, prompt: str) -> dict[str, Any]:
    with ExitStack() as stack:
        emulator = stack.enter_context(emulator_process(rate_limit=0, speed=5.0))
        redis_url = stack.enter_context(redis_process()) if redis else None
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mogplex-bench-scale-")))
        served = [stack.enter_context(replica(emulator, tmp / f"replica-{n}", redis_url)) for n in range(REPLICAS)]
        return await _starts([one.url for one in served], emulator, starts, prompt)


async def _wait_until_over(client: Client, run_id: str) -> None:
    while True:
        result = await client.call_tool("wait_for_run", {"runId": run_id, "timeoutSeconds": 20})
        if not result.is_error and (result.structured_content or {}).get("run", {}).get("terminal"):
            return


async def _watched(replicas: int, redis: bool) -> int:
    """Upstream requests while WATCHERS_PER_RUN waiters per run, spread over the replicas, see WATCHED_RUNS finish."""
    with ExitStack() as stack:
        emulator = stack.enter_context(emulator_process(rate_limit=0, speed=5.0))
        redis_url = stack.enter_context(redis_process()) if redis else None
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mogplex-bench-watch-")))
        served = [stack.enter_context(replica(emulator, tmp / f"replica-{n}", redis_url)) for n in range(replicas)]
        async with AsyncExitStack() as clients_stack, httpx2.AsyncClient(timeout=30) as http:
            clients = [await clients_stack.enter_async_context(Client(one.url, mode="auto")) for one in served]
            run_ids = await emulator.create_runs(http, WATCHED_RUNS, "success")
            before = await emulator.stats(http)
            with anyio.fail_after(300):
                async with anyio.create_task_group() as tg:
                    for index in range(WATCHED_RUNS * WATCHERS_PER_RUN):
                        tg.start_soon(_wait_until_over, clients[index % replicas], run_ids[index % WATCHED_RUNS])
            return (await emulator.stats(http) - before).requests


async def _watchers_row(section: Section) -> None:
    one = await _watched(1, redis=False)
    three = await _watched(REPLICAS, redis=True)
    control = await _watched(REPLICAS, redis=False)
    section.add(
        f"1 vs {REPLICAS} replicas: upstream requests for {WATCHED_RUNS} runs × {WATCHERS_PER_RUN} watchers",
        f"{one} (1 replica) vs {three} ({REPLICAS} replicas, Redis); control without Redis: {control}",
        f"{REPLICAS} replicas ≤ 1 replica + {WATCHED_RUNS}",
        three <= one + WATCHED_RUNS,
    )


async def _throughputs(seconds: float, rounds: int) -> tuple[Load, Load, int]:
    """`get_run` calls/s of THROUGHPUT_CLIENTS closed-loop clients on a finished run, on 1 replica then 2; and
    the API requests the emulator answered during both windows."""
    with ExitStack() as stack:
        emulator = stack.enter_context(emulator_process(rate_limit=0, speed=5.0))
        redis_url = stack.enter_context(redis_process())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mogplex-bench-scale-tput-")))
        served = [stack.enter_context(replica(emulator, tmp / f"replica-{n}", redis_url)) for n in range(2)]
        async with AsyncExitStack() as clients_stack, httpx2.AsyncClient(timeout=30) as http:
            (run_id,) = await emulator.create_runs(http, 1, "success")
            for one in served:  # every replica has seen the run finish, as after a wait_for_run
                client = await clients_stack.enter_async_context(Client(one.url, mode="auto"))
                with anyio.fail_after(120):
                    await _wait_until_over(client, run_id)
            before = await emulator.stats(http)
            alone, paired = await _interleaved(served, run_id, seconds, rounds)
            upstream = (await emulator.stats(http) - before).requests
        return alone, paired, upstream


async def _interleaved(served: list[HttpServer], run_id: str, seconds: float, rounds: int) -> tuple[Load, Load]:
    """`rounds` windows on 1 replica and as many on 2, in ABBA order, so drift in the machine's load
    falls on both alike; each side's windows are merged."""
    setups = ([served[0]], served)
    loads: tuple[list[Load], list[Load]] = ([], [])
    for round_number in range(rounds):
        for side in (0, 1) if round_number % 2 == 0 else (1, 0):
            urls, pids = [one.url for one in setups[side]], [one.pid for one in setups[side]]
            loads[side].append(await measure(urls, pids, run_id, THROUGHPUT_CLIENTS, seconds))
    return _merged(loads[0]), _merged(loads[1])


def _merged(loads: list[Load]) -> Load:
    return Load(
        clients=loads[0].clients,
        seconds=sum(load.seconds for load in loads),
        latencies_ms=[latency for load in loads for latency in load.latencies_ms],
        errors=sum(load.errors for load in loads),
        server_cpu_s=sum(load.server_cpu_s for load in loads),
        client_cpu_s=sum(load.client_cpu_s for load in loads),
    )


def _throughput_value(load: Load) -> str:
    latencies = load.latencies_ms
    return (
        f"{load.calls_per_second:.0f} calls/s; p50 / p95 {percentile(latencies, 50):.0f} / "
        f"{percentile(latencies, 95):.0f} ms; CPU: replicas {load.server_cpu_s / load.seconds * 100:.0f}%, "
        f"clients {load.client_cpu_s / load.seconds * 100:.0f}% of a core"
        + (f"; {load.errors} errors" if load.errors else "")
    )


async def _throughput_rows(section: Section, seconds: float, rounds: int) -> None:
    alone, paired, upstream = await _throughputs(seconds, rounds)
    who = f"{THROUGHPUT_CLIENTS} clients, `get_run` on a finished run"
    section.add(f"HTTP throughput, 1 replica (Redis): {who}", _throughput_value(alone))
    section.add(f"HTTP throughput, 2 replicas (Redis, client-side round robin): {who}", _throughput_value(paired))
    section.add(
        "2 replicas / 1 replica: calls/s (2 cores shared by the replicas, Redis, the emulator and the clients)",
        f"{paired.calls_per_second / alone.calls_per_second:.2f}×",
    )
    section.notes.append(
        "The machine has 2 cores, shared by the replicas, redis-server, the emulator and the benchmark's clients "
        "(and other engineers' test suites), so a second replica is not expected to double throughput here. In "
        f"this run the replicas together used {_cores(alone.server_cpu_s, alone)} and the clients "
        f"{_cores(alone.client_cpu_s, alone)} of a core with 1 replica, {_cores(paired.server_cpu_s, paired)} and "
        f"{_cores(paired.client_cpu_s, paired)} with 2; the upstream answered {upstream} requests in both windows "
        "together (a finished run is answered from what its follower saw). The rest of the 2 cores went to "
        "everything else on the machine, so a second replica can add only what the cores have left; on separate "
        "cores or machines each replica brings its own ceiling (HTTP throughput: about 350 `get_run` calls/s per "
        "process on a running run, which asks the upstream every time)."
    )


def _cores(cpu_seconds: float, load: Load) -> str:
    return f"{cpu_seconds / load.seconds:.2f}"


async def run(starts: int, throughput_seconds: float, throughput_rounds: int) -> Section:
    section = Section(
        key="scale",
        title="Scale-out (Redis)",
        method=(
            f"{REPLICAS} `serve --transport http --stateless` processes with separate state dirs and one "
            "redis-server (no persistence), against one emulator process (no rate limits). Identical `start_run` "
            f"calls, three at a time (one per replica), modern-era clients; every {FAULT_EVERY} rounds the "
            "emulator drops one start's connection after creating the run and answers another with a 500. "
            "Counted: runs the emulator created. The control repeats it without `--redis-url`. Watchers: "
            f"{WATCHED_RUNS} runs (the `success` scenario at 5× speed), {WATCHERS_PER_RUN} concurrent `wait_for_run` "
            "loops each, spread round-robin over the replicas (one client per replica); counted: API requests "
            "the emulator answered from the first watcher to the last run's end. Throughput: 2 replicas on "
            f"Redis, one finished run (both replicas waited on it first), {THROUGHPUT_CLIENTS} handshake-era "
            "clients in the benchmark process calling `get_run` in a closed loop (`bench/throughput.py`'s loop: "
            f"{WARMUP_S:g} s warm-up, then {throughput_seconds:g} s measured per window): all on one replica, or "
            "client i on replica i mod 2 (a client-side round robin, no proxy); "
            f"{throughput_rounds} window(s) of each, alternating (1, 2, 2, 1, ...), merged per side."
        ),
    )
    shared = await _scenario(starts, redis=True, prompt="Scale benchmark: one run, however often it is retried")
    alone = await _scenario(CONTROL_STARTS, redis=False, prompt="Scale benchmark control")
    total = shared["ok"] + shared["failed"]
    section.add(
        f"{total} identical starts over {REPLICAS} replicas with Redis: runs created upstream",
        f"{shared['runs']} ({shared['ok']} calls answered, {shared['failed']} failed after retries)",
        "1",
        shared["runs"] == 1,
    )
    section.add(
        "start_run calls/s across the replicas (3 in flight)",
        f"{total / shared['seconds']:.0f} calls/s",
    )
    section.add(
        f"control: {CONTROL_STARTS} identical starts over {REPLICAS} replicas without Redis: runs created",
        f"{alone['runs']}",
    )
    await _watchers_row(section)
    await _throughput_rows(section, throughput_seconds, throughput_rounds)
    return section
