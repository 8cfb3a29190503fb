"""Cold start: spawn → `initialize` answered over stdio, ours against a bare MCPServer, interleaved."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Summary, median
from bench.report import Section

TARGET_RATIO = 1.15
TIMEOUT_S = 30.0
OURS = [sys.executable, "-m", "mogplex_mcp", "serve"]
BARE = [sys.executable, "-m", "bench.bare_server"]

_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "mogplex-bench", "version": "0"},
    },
}
_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
_TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


@dataclass(frozen=True)
class Startup:
    """Seconds from spawn to the `initialize` answer, and to the `tools/list` answer after it."""

    initialize: float
    tools_list: float


def host_env(state_dir: Path) -> dict[str, str]:
    """What a host passes: a handful of variables plus the server's own (hosts pass little else)."""
    env = {key: os.environ[key] for key in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER") if key in os.environ}
    env.update(
        MOGPLEX_TOKEN="mog_BenchColdStart0000000000",
        MOGPLEX_BASE_URL="http://127.0.0.1:9",  # never contacted: initialize and tools/list stay local
        MOGPLEX_MCP_STATE_DIR=str(state_dir),
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
    )
    return env


def _read_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no answer from {process.args!r} within {TIMEOUT_S:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"{process.args!r} closed stdout before answering")
        buffer += chunk
    return buffer


def _send(process: subprocess.Popen[bytes], message: dict[str, object]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def spawn_once(command: list[str], env: dict[str, str]) -> Startup:
    """One cold start: spawn, `initialize` (timed), `tools/list` (timed), then close stdin and reap."""
    started = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT_S
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        _send(process, _INITIALIZE)
        answer = _read_line(process, deadline)
        initialized = time.perf_counter() - started
        if b'"result"' not in answer:
            raise RuntimeError(f"initialize failed: {answer[:200]!r}")
        _send(process, _INITIALIZED)
        _send(process, _TOOLS_LIST)
        _read_line(process, deadline)
        listed = time.perf_counter() - started
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return Startup(initialized, listed)


def run(samples: int) -> Section:
    section = Section(
        key="cold_start",
        title="Cold start (stdio)",
        method=(
            f"Spawn → `initialize` answered, over stdio, {samples} samples each, interleaved (ours, bare, ours, "
            "bare, ...) after one discarded warm-up of each (so both read warm .pyc files and the page cache). "
            "Ours: `python -m mogplex_mcp serve` with a host-like environment (token, base URL, a fresh state "
            "dir); bare: `python -m bench.bare_server`, an `MCPServer` with one trivial tool. The JSON-RPC lines "
            "are written and read by hand (no client library in the timing). `tools/list` answered is shown too: "
            "hosts send it right after `initialize`."
        ),
    )
    ours: list[Startup] = []
    bare: list[Startup] = []
    with tempfile.TemporaryDirectory(prefix="mogplex-bench-cold-") as tmp:
        env = host_env(Path(tmp))
        spawn_once(OURS, env)
        spawn_once(BARE, env)
        for _ in range(samples):
            ours.append(spawn_once(OURS, env))
            bare.append(spawn_once(BARE, env))
    ours_init = Summary.of([s.initialize for s in ours])
    bare_init = Summary.of([s.initialize for s in bare])
    ratio = ours_init.median / bare_init.median
    pairwise = median([o.initialize / b.initialize for o, b in zip(ours, bare, strict=True)])
    section.add("bare MCPServer: spawn → initialize (median / p99)", _ms_pair(bare_init))
    section.add("mogplex-mcp: spawn → initialize (median / p99)", _ms_pair(ours_init))
    section.add(
        "ratio ours / bare (medians; median of pairwise ratios)",
        f"{ratio:.2f}× ({pairwise:.2f}×)",
        f"≤ {TARGET_RATIO:.2f}×",
        ratio <= TARGET_RATIO,
    )
    ours_list = median([s.tools_list for s in ours])
    bare_list = median([s.tools_list for s in bare])
    section.add(
        "spawn → tools/list answered, ours vs bare (medians)",
        f"{ours_list * 1000:.0f} ms vs {bare_list * 1000:.0f} ms ({ours_list / bare_list:.2f}×)",
    )
    section.notes.append(
        f"Our extra start-up time: {(ours_init.median - bare_init.median) * 1000:.0f} ms at the median. What goes "
        "into it (from `python -X importtime -m mogplex_mcp serve`): our own modules (pydantic result and wire "
        "models are built at import), httpx2 (which a bare server never loads), creating the server "
        "(registering six tools builds their argument and output schemas) and the lifespan (HTTP pool, "
        "SQLite journal) before the first message is read."
    )
    if ratio > TARGET_RATIO:
        section.notes.append(
            "Miss: see the import-time findings in the notes below for what is left and what would close it."
        )
    return section


def _ms_pair(summary: Summary) -> str:
    return f"{summary.median * 1000:.0f} ms / {summary.p99 * 1000:.0f} ms"


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    for row in result.rows:
        print(f"{row.metric}: {row.value} {row.target} {row.verdict}")
