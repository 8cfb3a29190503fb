"""Issue 23's attacks, measured: compaction CPU, the event cache's memory, pacers, body floods, unverified floods.

CPU is the process's own (time.process_time), memory what tracemalloc still holds or the server's RSS from
/proc; the floods run against a real `serve --transport http` process in front of the emulator process.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.emulator_proc import EmulatorProcess, emulator_process
from bench.measure import peak_rss_mb, rss_mb
from bench.report import Section
from bench.servers import http_server, server_env, settle
from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.emulator import READ_ONLY_TOKEN
from mogplex_mcp.runs.compact import compact
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.local import LocalPacer
from mogplex_mcp.runs.pacer import WINDOW_SECONDS
from mogplex_mcp.server.compact_views import compact_event_views, transcript_tail

MB = 1024 * 1024
SHARED = ("--allowed-host", "127.0.0.1")
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
ADDRESSES = 25  # the body flood comes from this many loopback addresses: under each one's share, over the total


def _event(n: int, type_: str, message: str | None = None, **payload: Any) -> RunEvent:
    return RunEvent.model_validate(
        {"id": f"e{n}", "type": type_, "toolName": "read_file", "message": message, "payload": payload}
    )


def tool_events(count: int) -> list[RunEvent]:
    events: list[RunEvent] = []
    for n in range(count // 2):
        events.append(_event(2 * n, "tool_started", toolCallId=f"c{n}", path=f"src/f{n}.py"))
        events.append(_event(2 * n + 1, "tool_finished", toolCallId=f"c{n}", state="completed"))
    return events


def delta_events(count: int, size: int = 2048) -> list[RunEvent]:
    words = "word " * (size // 5)
    return [_event(n, "log", message=words, kind="assistant_delta") for n in range(count)]


def cpu_ms(work: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best * 1000


def compaction(section: Section) -> None:
    tools, deltas = tool_events(5_000), delta_events(5_000)
    section.add(
        "`compact()` of 5,000 tool events (2,500 calls), CPU", f"{cpu_ms(lambda: compact(tools)):.1f} ms", "linear"
    )
    section.add("`compact()` of 5,000 × 2 KB deltas, CPU", f"{cpu_ms(lambda: compact(deltas)):.1f} ms", "linear")
    follower = RunFollower("run", "fp", 5_000)
    follower.add_events(tools)

    def views() -> object:
        return compact_event_views([], "mog_secret", 20, lines=follower.compactor.lines())

    def transcript() -> object:
        return transcript_tail(follower.compactor.lines(), "mog_secret", 40_000)

    transcript()  # the first read renders; the viewer's repeated reads reuse it
    view_ms, tail_ms = cpu_ms(views, 5), cpu_ms(transcript, 5)
    section.add(
        "a wait's 20 views from a follower of 5,000 events, CPU per call",
        f"{view_ms:.2f} ms",
        "≤ 5 ms (the loop is never held longer)",
        view_ms <= 5,
    )
    section.add(
        "the transcript's tail, re-read (the viewer every 2 s), CPU per read",
        f"{tail_ms:.2f} ms",
        "≤ 5 ms",
        tail_ms <= 5,
    )


def event_cache(section: Section) -> None:
    follower = RunFollower("run", "fp", 5_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        follower.add_events(delta_events(150, 900 * 1024))
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / MB
    finally:
        tracemalloc.stop()
    section.add("memory held after one run sent 150 events of 900 KB (135 MB)", f"{held:.1f} MB", "≤ 4 MB", held <= 4)


async def pacers(section: Section) -> None:
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    table = LocalPacer(40, clock=lambda: clock[0], sleep=sleep)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(8_000):
            await table.acquire(f"made-up-{n}")
        busy = (tracemalloc.get_traced_memory()[0] - before) / MB
        clock[0] += WINDOW_SECONDS
        await table.acquire("one-more")
        gc.collect()
        after = (tracemalloc.get_traced_memory()[0] - before) / MB
    finally:
        tracemalloc.stop()
    section.add(
        "pacers after 8,000 tokens each sent a request: within the minute / a minute later",
        f"{busy:.1f} MB / {after:.2f} MB ({table.tracked} kept)",
        "forgotten once idle",
        table.tracked == 1,
    )


async def body_flood(section: Section, emulator: EmulatorProcess, state_dir: Path, requests: int) -> None:
    """`requests` POSTs with made-up bearers, each declaring 1 MiB and sending 90% of it, held open at once."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "padding": "x" * (MB - 100)}).encode()
    statuses: Counter[str] = Counter()
    with http_server(server_env(emulator, state_dir), args=SHARED) as server:
        host, port = server.url.removeprefix("http://").split("/")[0].split(":")
        await settle(1.0)
        before = rss_mb(server.pid)
        release = anyio.Event()

        async def slow(n: int) -> None:
            source = f"127.0.1.{1 + n % ADDRESSES}"  # within each address's share: the in-all cap is what holds
            head = (
                f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer mog_MadeUp{n:06}x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            try:
                async with await anyio.connect_tcp(host, int(port), local_host=source) as stream:
                    await stream.send(head + body[: len(body) * 9 // 10])
                    with anyio.move_on_after(0.5):
                        answer = await stream.receive()
                        statuses[answer.split(b" ")[1].decode()] += 1
                        return
                    statuses["held"] += 1
                    await release.wait()
            except OSError:
                statuses["dropped"] += 1

        async with anyio.create_task_group() as tg:
            for n in range(requests):
                tg.start_soon(slow, n)
            await anyio.sleep(3.0)
            during = rss_mb(server.pid)
            release.set()
        peak = peak_rss_mb(server.pid)
    shown = ", ".join(f"{count} × {status}" for status, count in sorted(statuses.items()))
    section.add(
        f"{requests} POSTs of 1 MiB bodies with made-up bearers, 90% sent and held, from {ADDRESSES} addresses",
        f"{shown}; RSS {before:.0f} → {during:.0f} MB (peak {peak:.0f})",
        "RSS growth ≤ 3 × the 64 MiB in flight",
        during - before <= 3 * 64,
    )


async def unverified_flood(section: Section, emulator: EmulatorProcess, state_dir: Path, flood: int) -> None:
    """A newcomer's first call (from another address) with and without `flood` made-up bearers in flight."""
    async with httpx2.AsyncClient(timeout=30) as control:
        fault = {"kind": "delay", "count": 100_000, "method": "GET", "path": "/api/v1/mogplex/repos", "delay": 0.4}
        armed = await control.post(emulator.base_url + "/_emulator/faults", json=fault)
        if armed.status_code != 201:
            raise RuntimeError(f"could not slow the emulator down: {armed.status_code} {armed.text[:200]}")
    wide = (
        *("--max-unverified-requests-per-client", "1000", "--max-unverified-requests", "1000"),
        *("--max-unverified-sessions-per-client", "1000", "--max-unverified-sessions", "1000"),
    )
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_repos", "arguments": {}}}
    with http_server(server_env(emulator, state_dir), args=(*SHARED, *wide)) as server:

        async def newcomer(token: str, source: str) -> float:
            transport = httpx2.AsyncHTTPTransport(local_address=source)
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(transport=transport, headers=headers, timeout=60) as http,
                Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
            ):
                started = time.monotonic()
                result = await client.call_tool("list_repos", {})
                took = time.monotonic() - started
            if result.is_error:
                raise RuntimeError("the newcomer's call failed")
            return took

        await settle(1.0)
        alone = await newcomer(emulator.token, "127.0.0.2")
        limits = httpx2.Limits(max_connections=flood, max_keepalive_connections=flood)
        async with httpx2.AsyncClient(timeout=60, limits=limits) as http:

            async def attacker(n: int) -> None:
                auth = {"Authorization": f"Bearer mog_MadeUpFlood{n:06}x"}
                opened = await http.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, **auth})
                session = {"Mcp-Session-Id": opened.headers.get("mcp-session-id", "")}
                await http.post(server.url, json=call, headers={**MCP_HEADERS, **auth, **session})

            async with anyio.create_task_group() as tg:
                for n in range(flood):
                    tg.start_soon(attacker, n)
                await anyio.sleep(2.0)
                during = await newcomer(READ_ONLY_TOKEN, "127.0.0.3")
                tg.cancel_scope.cancel()
    section.add(
        f"a newcomer's first call, alone / with {flood} made-up bearers' calls in flight (0.4 s upstream)",
        f"{alone:.2f} s / {during:.2f} s ({during / alone:.1f}×)",
        "≤ 3× (a turn, not the queue)",
        during / alone <= 3,
    )


async def run(flood: int = 300, bodies: int = 150) -> Section:
    section = Section(
        key="hardening",
        title="Issue 23 attacks",
        method=(
            "In process: CPU (time.process_time, best of 3–5) of compacting 5,000 events and of a wait's views and "
            "the transcript's tail from a follower's kept lines; memory still held (tracemalloc) after a follower "
            "took 150 events of 900 KB, and after 8,000 tokens each took a pacer slot (then a minute later). "
            "Against a `serve --transport http --allowed-host 127.0.0.1` process (defaults) and the emulator "
            f"process: {bodies} slow 1 MiB bodies with made-up bearers from {ADDRESSES} loopback addresses "
            "(RSS from /proc 3 s into the flood); and a newcomer's first `list_repos` from its own loopback address, "
            f"alone and with {flood} made-up bearers' calls in flight from another (the emulator answers /repos in "
            "0.4 s; the gateway's per-address budget for unverified requests is opened wide so the flood reaches "
            "the upstream gate's fair queue)."
        ),
    )
    compaction(section)
    event_cache(section)
    await pacers(section)
    with emulator_process(rate_limit=0) as emulator, tempfile.TemporaryDirectory(prefix="mogplex-bench-h-") as tmp:
        await body_flood(section, emulator, Path(tmp) / "bodies", bodies)
        await unverified_flood(section, emulator, Path(tmp) / "flood", flood)
    return section
