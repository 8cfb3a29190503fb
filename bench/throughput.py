"""HTTP throughput: 10 and 50 concurrent clients calling `get_run` in a closed loop against one server process."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import Client

from bench.emulator_proc import emulator_process
from bench.measure import Summary, cpu_seconds
from bench.report import Section
from bench.servers import http_server, server_env

CLIENT_COUNTS = (1, 10, 50)
WARMUP_S = 2.0
# One busy session per client, all of one token: above the gateway's default of 32 per token.
SESSION_CAP = ("--max-sessions-per-token", str(max(CLIENT_COUNTS)))


@dataclass
class Load:
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    emulator_cpu_s: float = 0.0

    @property
    def calls_per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds


def _servers_cpu(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def _client_loop(client: Client, run_id: str, start: float, stop: float, load: Load) -> None:
    arguments = {"runId": run_id}
    while (now := time.perf_counter()) < stop:
        result = await client.call_tool("get_run", arguments)
        if now >= start:  # calls begun during warm-up are not counted
            load.latencies_ms.append((time.perf_counter() - now) * 1000)
            load.errors += bool(result.is_error)


async def measure(urls: Sequence[str], server_pids: Sequence[int], run_id: str, clients: int, seconds: float) -> Load:
    """`clients` handshake-era sessions in a closed loop of `get_run`, client i on `urls[i % len(urls)]` (a
    client-side round robin); after WARMUP_S, `seconds` are measured, with the CPU of all `server_pids`."""
    load = Load(clients)
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(Client(urls[index % len(urls)], mode="legacy")) for index in range(clients)
        ]
        start = time.perf_counter() + WARMUP_S
        stop = start + seconds
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(_client_loop, session, run_id, start, stop, load)
            await anyio.sleep(max(0.0, start - time.perf_counter()))
            server_before, client_before = _servers_cpu(server_pids), time.process_time()
            await anyio.sleep(max(0.0, stop - time.perf_counter()))
            load.server_cpu_s = _servers_cpu(server_pids) - server_before
            load.client_cpu_s = time.process_time() - client_before
        load.seconds = seconds
    return load


async def run(seconds: float) -> Section:
    section = Section(
        key="throughput",
        title="HTTP throughput",
        method=(
            "One `serve --transport http` process on loopback; N concurrent clients (1 as the baseline), each its "
            "own handshake-era session (`mcp.Client(url, mode='legacy')`, what hosts speak today), all in the "
            "benchmark process, "
            f"each calling `get_run` on a running run in a closed loop (next call when the last returns). After "
            f"{WARMUP_S:g} s of warm-up, {seconds:g} s are measured: completed calls/s, per-call latency "
            "(median / p99) and the CPU time of the server and of the client process over the window. The "
            "emulator (no rate limit) runs in its own process, the server's per-token session cap raised to "
            f"{max(CLIENT_COUNTS)}. Everything shares the machine's 2 cores."
        ),
    )
    loads: list[Load] = []
    with (
        emulator_process(rate_limit=0) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-tput-") as tmp,
        http_server(server_env(emulator, Path(tmp)), args=SESSION_CAP) as served,
    ):
        async with httpx2.AsyncClient(timeout=30) as control:
            (run_id,) = await emulator.create_runs(control, 1, "endless")
            for clients in CLIENT_COUNTS:
                before = await emulator.stats(control)
                load = await measure([served.url], [served.pid], run_id, clients, seconds)
                load.emulator_cpu_s = (await emulator.stats(control)).cpu_seconds - before.cpu_seconds
                loads.append(load)
    for load in loads:
        who = f"{load.clients} client{'s' if load.clients > 1 else ''}"
        latency = Summary.of(load.latencies_ms)
        calls = max(1, len(load.latencies_ms))
        section.add(
            f"{who} at once: calls/s; latency median / p99",
            f"{load.calls_per_second:.0f} calls/s; {latency.median:.0f} / {latency.p99:.0f} ms"
            + (f"; {load.errors} errors" if load.errors else ""),
        )
        section.add(
            f"{who}: CPU per call (server / clients / emulator) and server busy",
            f"{load.server_cpu_s / calls * 1000:.1f} / {load.client_cpu_s / calls * 1000:.1f} / "
            f"{load.emulator_cpu_s / calls * 1000:.1f} ms; server at {load.server_cpu_s / load.seconds * 100:.0f}% "
            "of a core",
        )
    heaviest = loads[-1]
    calls = max(1, len(heaviest.latencies_ms))
    server_ms = heaviest.server_cpu_s / calls * 1000
    total_ms = (heaviest.server_cpu_s + heaviest.client_cpu_s + heaviest.emulator_cpu_s) / calls * 1000
    cores = heaviest.calls_per_second * total_ms / 1000
    section.notes.append(
        f"No target was set for throughput. Every call costs about {total_ms:.1f} ms of CPU in all (server + "
        f"clients + emulator), so at {heaviest.calls_per_second:.0f} calls/s the three processes keep "
        f"{cores:.1f} of the machine's 2 cores busy, and other engineers' test suites had the rest: the rate is "
        "the machine's ceiling, which is why it barely moves from 1 to 50 clients while latency grows with the "
        "queue (Little's law: clients ≈ calls/s × latency). The server alone is one event loop on one core: at "
        f"{server_ms:.1f} ms of server CPU per `get_run` its own ceiling is about {1000 / server_ms:.0f} calls/s "
        "per process; beyond that, run more processes (`--stateless` lets any replica answer any request)."
    )
    section.notes.append(
        "The handshake-era client opens a new TCP connection per POST; a modern-era client would reuse one, but "
        "currently pays a ~40 ms stall per call (see Per-call overhead), so it is not used here."
    )
    return section


if __name__ == "__main__":
    result = anyio.run(run, 6.0)
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
    print(*result.notes, sep="\n")
