"""Per-call overhead: `get_run` through MCP (stdio, streamable HTTP; both protocol eras) vs a direct GET."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.types import CallToolResult

from bench.emulator_proc import emulator_process
from bench.measure import Summary, cpu_seconds
from bench.report import Section
from bench.servers import BARE, http_server, server_env, stdio_server

TARGET_ADDED_MS = 1.5
WARMUP_CALLS = 20
DIRECT = "direct GET (httpx2)"
FLOOR = "SDK floor: bare MCPServer echo, stdio"

Call = Callable[[], Awaitable[None]]


@dataclass
class Path_:
    """One way of getting the run: how to make a call, and whose CPU time to charge it to."""

    call: Call
    server_pid: int | None = None
    wall_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


def _checked(result: CallToolResult, what: str) -> None:
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"{what} failed during the benchmark: {text[:300]}")


def _direct_get(http: httpx2.AsyncClient, url: str) -> Call:
    async def call() -> None:
        (await http.get(url)).raise_for_status()

    return call


def _ms_per_call(seconds: float, calls: int) -> str:
    return f"{seconds / calls * 1000:.2f}"


def _tool_call(client: Client, name: str, arguments: dict[str, object]) -> Call:
    async def call() -> None:
        _checked(await client.call_tool(name, arguments), name)

    return call


async def _measure(paths: dict[str, Path_], calls: int) -> None:
    for _ in range(WARMUP_CALLS):
        for path in paths.values():
            await path.call()
    server_cpu_before = {name: cpu_seconds(p.server_pid) for name, p in paths.items() if p.server_pid}
    for _ in range(calls):
        for path in paths.values():
            cpu = time.process_time()
            started = time.perf_counter()
            await path.call()
            path.wall_ms.append((time.perf_counter() - started) * 1000)
            path.client_cpu_s += time.process_time() - cpu
    for name, before in server_cpu_before.items():
        pid = paths[name].server_pid
        assert pid is not None
        paths[name].server_cpu_s = cpu_seconds(pid) - before


async def run(calls: int) -> Section:
    section = Section(
        key="per_call",
        title="Per-call overhead",
        method=(
            f"`get_run` on a running (non-terminal) run — one upstream GET per call, the same request a direct "
            f"client makes — {calls} calls per path after {WARMUP_CALLS} warm-up calls each, one call at a time, "
            "interleaved round-robin across the paths of a pass so load spikes on the shared machine hit them all "
            "alike. Three passes (stdio; HTTP handshake era; HTTP modern era), each with its own direct baseline. "
            "Direct: `httpx2.AsyncClient` GET `/api/v1/mogplex/runs/{id}` on the emulator. MCP paths: `mcp.Client` "
            "against the real server process, over stdio and over streamable HTTP on loopback, in the handshake "
            "era (`mode='legacy'`, what hosts speak today) and the modern era (2026-07-28). SDK floor: the bare "
            "`MCPServer`'s trivial `echo` tool on the same transport — no upstream call at all — what any server "
            "on this SDK costs per call. Added = MCP path minus direct (median from medians, p99 from p99s). CPU "
            "per call: the server process's CPU time (from /proc) and the benchmark client's, summed / calls."
        ),
    )
    passes: list[dict[str, Path_]] = []
    with (
        emulator_process(rate_limit=0) as emulator,
        tempfile.TemporaryDirectory(prefix="mogplex-bench-call-") as tmp,
    ):
        async with httpx2.AsyncClient(timeout=30) as control:
            (run_id,) = await emulator.create_runs(control, 1, "endless")
        arguments: dict[str, object] = {"runId": run_id}
        run_url = f"{emulator.base_url}/api/v1/mogplex/runs/{run_id}"
        env = server_env(emulator, Path(tmp) / "stdio")
        async with AsyncExitStack() as stack:
            direct = await stack.enter_async_context(
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {emulator.token}"}, timeout=30)
            )
            legacy = await stack.enter_async_context(stdio_server(env, mode="legacy"))
            modern = await stack.enter_async_context(
                stdio_server(server_env(emulator, Path(tmp) / "modern"), mode="auto")
            )
            bare = await stack.enter_async_context(stdio_server(env, mode="legacy", command=BARE))
            stdio_pass = {
                DIRECT: Path_(_direct_get(direct, run_url)),
                "stdio, handshake era": Path_(_tool_call(legacy.client, "get_run", arguments), legacy.pid),
                "stdio, modern era": Path_(_tool_call(modern.client, "get_run", arguments), modern.pid),
                FLOOR: Path_(_tool_call(bare.client, "echo", {"text": "x"}), bare.pid),
            }
            await _measure(stdio_pass, calls)
            passes.append(stdio_pass)
        for era, mode in (("handshake era", "legacy"), ("modern era", "auto")):
            with (
                http_server(server_env(emulator, Path(tmp) / mode)) as served,
                http_server(env, bare=True) as bare_served,
            ):
                async with (
                    httpx2.AsyncClient(headers={"Authorization": f"Bearer {emulator.token}"}, timeout=30) as direct,
                    Client(served.url, mode=mode) as ours,
                    Client(bare_served.url, mode=mode) as floor,
                ):
                    http_pass = {
                        DIRECT: Path_(_direct_get(direct, run_url)),
                        f"HTTP, {era}": Path_(_tool_call(ours, "get_run", arguments), served.pid),
                        f"SDK floor: bare MCPServer echo, HTTP {era}": Path_(
                            _tool_call(floor, "echo", {"text": "x"}), bare_served.pid
                        ),
                    }
                    await _measure(http_pass, calls)
                    passes.append(http_pass)
    for index, measured in enumerate(passes):
        _report(section, measured, calls, first=index == 0)
    _explain(section, passes, calls)
    return section


def _report(section: Section, paths: dict[str, Path_], calls: int, *, first: bool) -> None:
    direct = Summary.of(paths[DIRECT].wall_ms)
    section.add(
        f"{DIRECT}{'' if first else ', this pass'}: median / p99",
        f"{direct.median:.2f} / {direct.p99:.2f} ms "
        f"(client CPU {_ms_per_call(paths[DIRECT].client_cpu_s, calls)} ms/call)",
    )
    for name, path in paths.items():
        if name == DIRECT:
            continue
        summary = Summary.of(path.wall_ms)
        cpu = (
            f"server CPU {path.server_cpu_s / calls * 1000:.2f} ms/call, client {path.client_cpu_s / calls * 1000:.2f}"
        )
        if name.startswith("SDK floor"):
            section.add(f"{name}: median / p99", f"{summary.median:.2f} / {summary.p99:.2f} ms ({cpu})")
            continue
        added = summary.median - direct.median
        on_stdio = name.startswith("stdio")
        section.add(
            f"`get_run`, {name}: added median / added p99 (ratio to direct)",
            f"+{added:.2f} / +{summary.p99 - direct.p99:.2f} ms ({summary.median / direct.median:.2f}×; {cpu})",
            f"≤ +{TARGET_ADDED_MS} ms median" if on_stdio else "",
            added <= TARGET_ADDED_MS if on_stdio else None,
        )


def _explain(section: Section, passes: list[dict[str, Path_]], calls: int) -> None:
    stdio_pass = passes[0]
    direct = Summary.of(stdio_pass[DIRECT].wall_ms).median
    floor = Summary.of(stdio_pass[FLOOR].wall_ms).median
    ours = Summary.of(stdio_pass["stdio, handshake era"].wall_ms).median
    added = ours - direct
    beyond_floor = ours - direct - floor
    extra_cpu = (stdio_pass["stdio, handshake era"].server_cpu_s - stdio_pass[FLOOR].server_cpu_s) / calls * 1000
    request_cpu = stdio_pass[DIRECT].client_cpu_s / calls * 1000
    section.notes.append(
        f"Decomposition (stdio, handshake era, medians): `get_run` adds {added:.2f} ms to the direct GET. The SDK's "
        f"own round trip for a tool that does nothing (bare `echo` over stdio) is {floor:.2f} ms — "
        f"{floor / TARGET_ADDED_MS:.0%} of the {TARGET_ADDED_MS} ms budget before any code of ours runs: the "
        "client's request and result models, JSON-RPC framing, the stdio reader and writer (a worker-thread hop "
        f"per line) and the server's dispatch with argument validation. That leaves about {beyond_floor:.2f} ms "
        f"that is ours. In CPU terms, the server spends {extra_cpu:.2f} ms more per `get_run` than per `echo`, of "
        f"which making the upstream request accounts for about {request_cpu:.2f} ms (what the direct client "
        "spends on it); the rest is our code: `RunDetail` parsing, the journal upsert (`remember`: a worker-thread "
        "hop and a SQLite transaction), building the structured result and the SDK validating it against the "
        "output schema."
    )
    if any(row.met is False for row in section.rows):
        section.notes.append(
            "Miss on stdio — what would close it: most of the gap is the SDK's per-call floor (compare the bare "
            "server's echo tool above: framing, dispatch and validation of a tool that does nothing), which this "
            "repository cannot remove. Already done: the journal upsert is skipped when a run's status has not "
            "changed (no thread hop or SQLite transaction on a repeated `get_run`), and a finished, followed run "
            "is answered from the follower with no upstream call at all. What remains of ours is building the "
            "result model and the SDK checking it against the output schema. On 2 shared cores every process hop "
            "also waits for a CPU: p99s are several times the medians."
        )
    modern = next((paths for paths in passes if "HTTP, modern era" in paths), None)
    if modern is not None:
        ours_ms = Summary.of(modern["HTTP, modern era"].wall_ms).median
        bare_ms = next(Summary.of(p.wall_ms).median for name, p in modern.items() if name.startswith("SDK floor"))
        if ours_ms > bare_ms + 20:
            section.notes.append(
                f"HTTP, modern era: {ours_ms:.0f} ms per call against {bare_ms:.0f} ms for the bare server — a "
                "~40 ms stall per call that is ours. Cause: `mogplex_mcp/server/transport/serving.py:bind_socket` "
                "creates the listening socket with `socket.socket(family, socket.SOCK_STREAM)`, i.e. protocol 0, "
                "and asyncio sets TCP_NODELAY on accepted connections only when `sock.proto == IPPROTO_TCP`; so "
                "Nagle stays on, and a response written in pieces (SSE: headers, then events) on a kept-alive "
                "connection waits for the client's delayed ACK (40 ms minimum on Linux). The modern-era client "
                "keeps its connection alive, the handshake-era client opens one per POST, so only the modern era "
                "shows it. The bare server lets uvicorn bind (via getaddrinfo, protocol 6) and does not stall. Fix "
                "(one line): `socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)` in `bind_socket` (the "
                "emulator's `bind_loopback` has the same pattern)."
            )
    section.notes.append(
        "HTTP, handshake era: the SDK's handshake-era client opens a new TCP connection for every POST, so each "
        "call pays a connect and a fresh HTTP/1.1 exchange on both sides; that, not our code, is most of the gap "
        "to stdio (compare the bare server's floor on the same transport)."
    )


if __name__ == "__main__":
    for row in anyio.run(run, 200).rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
