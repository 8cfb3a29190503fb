"""The emulator in a process of its own, with counters the benchmarks read: `python -m bench.emulator_proc`.

A separate process keeps the emulator's CPU and the GIL out of both the server under test and the
benchmark's clients. Beside the emulator's API it serves two loopback-only endpoints of its own:

- `GET /_bench/stats`: API requests received (by kind and by status) and the process's CPU seconds —
  monotonic counters, unlike the emulator's request log, which drops its oldest half when full;
- `POST /_bench/runs {"count": n, "scenario": "endless"}`: create runs directly in the store, spending
  no token's rate-limit budget, so a measurement window starts with the upstream budget untouched.

The parent (`EmulatorProcess`) starts it, reads one JSON line from its stdout (`{"base_url": ...}`) and
ends it by closing its stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

STATS_PATH = "/_bench/stats"
RUNS_PATH = "/_bench/runs"
_RUN_PATH = re.compile(r"^/api/v1/mogplex/runs/[^/]+")


def request_kind(method: str, path: str) -> str:
    """`GET /runs/{id}/events` for `/api/v1/mogplex/runs/<uuid>/events`: one bucket per endpoint."""
    return f"{method} " + _RUN_PATH.sub("/runs/{id}", path).replace("/api/v1/mogplex", "")


def cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of the counters; subtract two snapshots to get a window's traffic."""

    requests: int
    by_kind: dict[str, int]
    by_status: dict[str, int]
    cpu_seconds: float
    # When each API request was answered (time.monotonic(), the same clock in every process on Linux).
    times: tuple[float, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorStats:
        return cls(
            requests=int(data["requests"]),
            by_kind={str(k): int(v) for k, v in data["by_kind"].items()},
            by_status={str(k): int(v) for k, v in data["by_status"].items()},
            cpu_seconds=float(data["cpu_seconds"]),
            times=tuple(float(t) for t in data.get("times", ())),
        )

    def __sub__(self, earlier: EmulatorStats) -> EmulatorStats:
        return EmulatorStats(
            requests=self.requests - earlier.requests,
            by_kind=_diff(self.by_kind, earlier.by_kind),
            by_status=_diff(self.by_status, earlier.by_status),
            cpu_seconds=self.cpu_seconds - earlier.cpu_seconds,
            times=self.times[len(earlier.times) :] if self.times else (),
        )

    @property
    def rate_limited(self) -> int:
        return self.by_status.get("429", 0)

    def busiest_minute(self) -> int:
        """The most requests answered in any 60 s (sliding) within these times: what a per-minute limit sees."""
        most, start = 0, 0
        for end, moment in enumerate(self.times):
            while moment - self.times[start] >= 60.0:
                start += 1
            most = max(most, end - start + 1)
        return most


def _diff(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in now.items() if value - before.get(key, 0)}


# --- the child process -------------------------------------------------------------------------------


class _CountingFront:
    """The emulator's ASGI app behind this process's counters and its two `/_bench/` endpoints."""

    def __init__(self, emulator: Any, inner: Any) -> None:
        self.emulator = emulator
        self.inner = inner
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.answered: list[float] = []
        self.lock = threading.Lock()

    def create_runs(self, count: int, scenario: str) -> list[str]:
        from mogplex_mcp.emulator.validation import parse_start_request

        emulator = self.emulator
        repo = emulator.config.repos[0]
        body = json.dumps({"repoId": repo["id"], "prompt": f"[scenario:{scenario}] benchmark run"}).encode()
        start = parse_start_request(body)
        return [
            emulator.store.create(start, repo, scenario, str(uuid.uuid4()), emulator.clock()).run_id
            for _ in range(count)
        ]

    def stats(self, scope: Any) -> dict[str, Any]:
        with self.lock:
            data: dict[str, Any] = {
                "requests": sum(self.kinds.values()),
                "by_kind": dict(self.kinds),
                "by_status": dict(self.statuses),
                "cpu_seconds": cpu_seconds_self(),
            }
            if b"times=1" in scope.get("query_string", b""):
                data["times"] = list(self.answered)
        return data

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        path: str = scope["path"]
        if path == STATS_PATH:
            await _reply(send, self.stats(scope))
            return None
        if path == RUNS_PATH:
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            wanted = json.loads(raw)
            await _reply(send, {"runIds": self.create_runs(int(wanted["count"]), str(wanted["scenario"]))})
            return None
        if not path.startswith("/api/"):
            return await self.inner(scope, receive, send)
        kind = request_kind(scope["method"], path)

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.kinds[kind] += 1
                    self.statuses[str(message["status"])] += 1
                    self.answered.append(time.monotonic())
            await send(message)

        return await self.inner(scope, receive, counting_send)


async def _reply(send: Any, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from mogplex_mcp.emulator import DEMO_TOKEN, Emulator, EmulatorConfig
    from mogplex_mcp.emulator.server import DropConnections, base_url_of

    config = EmulatorConfig(
        flavor=args.flavor,
        speed=args.speed,
        rate_limit_per_minute=args.rate_limit,
        start_limits=(0, 0, 0),
        max_runs=args.max_runs,
        max_events_per_run=args.max_events,
        long_run_events=args.long_events,
    )
    emulator = Emulator(config)
    app = _CountingFront(emulator, DropConnections(emulator.asgi_app()))

    # Protocol 6, not 0: asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP sockets, and
    # without it a streamed answer (SSE) on a kept-alive connection waits for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http="h11",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        emulator.closing.set()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(json.dumps({"base_url": base_url_of(sock), "token": DEMO_TOKEN}), flush=True)
    asyncio.run(server.serve([sock]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_proc")
    parser.add_argument("--flavor", default="documented", choices=("documented", "observed"))
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--rate-limit", type=int, default=60)
    parser.add_argument("--max-runs", type=int, default=2000)
    parser.add_argument("--max-events", type=int, default=2000)
    parser.add_argument("--long-events", type=int, default=500)
    _serve(parser.parse_args(argv))


# --- the parent's handle -----------------------------------------------------------------------------


@dataclass
class EmulatorProcess:
    """A running emulator process: where it listens, its token, and its counters."""

    base_url: str
    token: str
    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stats(self, http: httpx2.AsyncClient, *, times: bool = False) -> EmulatorStats:
        """The counters now; with `times`, also when each request was answered."""
        response = await http.get(self.base_url + STATS_PATH, params={"times": "1"} if times else {})
        response.raise_for_status()
        return EmulatorStats.from_json(response.json())

    async def create_runs(self, http: httpx2.AsyncClient, count: int, scenario: str) -> list[str]:
        response = await http.post(self.base_url + RUNS_PATH, json={"count": count, "scenario": scenario}, timeout=60)
        response.raise_for_status()
        return [str(run_id) for run_id in response.json()["runIds"]]


@contextmanager
def emulator_process(
    *,
    flavor: str = "documented",
    speed: float = 1.0,
    rate_limit: int = 60,
    max_runs: int = 2000,
    long_events: int = 500,
) -> Iterator[EmulatorProcess]:
    """Start `python -m bench.emulator_proc` with these settings; stop it on exit."""
    args = [sys.executable, "-m", "bench.emulator_proc", "--flavor", flavor, "--speed", str(speed)]
    args += ["--rate-limit", str(rate_limit), "--max-runs", str(max_runs), "--long-events", str(long_events)]
    root = Path(__file__).resolve().parent.parent  # `-m bench.emulator_proc` must resolve from any cwd
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark emulator exited before it was ready (see stderr above)")
        ready = json.loads(line)
        yield EmulatorProcess(str(ready["base_url"]), str(ready["token"]), process)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
