"""Many real `mogplex-mcp serve` processes sharing one state dir (one start journal), as on a desktop with
several hosts open (issue 18). Used by the suite (short) and by the `journal_stress` benchmark (long).

Slots run side by side, half stdio and half streamable HTTP. Each slot starts a server, drives it (starts,
some identical to an earlier start, as host retries are; get_run, list_runs, resources/list, short waits),
then stops it by client disconnect, SIGTERM or SIGKILL, in rotation, often with a call in flight, and starts
a new one. Every identical start carries the same `workingBranch`, so the emulator's runs can be counted per
start. At the end a fresh server lists the runs, and the file itself is checked.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bench.report import Section
from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorConfig, EmulatorHandle, EmulatorThread
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "mogplex_mcp", "serve"]
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"  # acme/api, seeded by the emulator
BRANCH_PREFIX = "stress/start-"
STOPS = ("disconnect", "sigterm", "sigkill")
STARTUP_LIMIT_S = 60.0
_MARKER = "MOGPLEX_STRESS_LIFE"  # in each server's environment: which slot's life it is


@dataclass
class Tally:
    """What the fleet did and what it got back."""

    starts: int = 0
    identical_starts: int = 0  # a start whose request an earlier start already sent
    replies: dict[int, set[str]] = field(default_factory=dict)  # start id -> run ids the tools answered with
    start_errors: list[str] = field(default_factory=list)  # what start_run answered when it failed
    cut_by_stop: int = 0  # clients whose server was stopped under a call (the call failed with the server)
    stop_errors: list[str] = field(default_factory=list)  # other failures of a server's life (startup, teardown)
    reads: int = 0
    read_errors: int = 0
    servers: Counter[str] = field(default_factory=Counter)  # "stdio sigkill" -> how many were stopped so
    next_start: int = 0
    # Below the journal's 200 runs kept per token, so every run started can still be listed at the end.
    max_distinct: int = 180

    def pick_start(self, rng: random.Random) -> int:
        """A new start a third of the time, else one of the last few again (a host's retry)."""
        if self.next_start == 0 or (rng.random() < 0.35 and self.next_start < self.max_distinct):
            self.next_start += 1
            return self.next_start
        self.identical_starts += 1
        return rng.randint(max(1, self.next_start - 3), self.next_start)


@dataclass(frozen=True)
class Verdict:
    """The checks at the end: integrity, runs per identical start, runs missing from the list."""

    integrity: list[str]
    upstream_runs: int
    starts_with_several_runs: dict[int, int]
    replies_disagreeing: dict[int, set[str]]
    replied_runs: set[str]
    listed_runs: set[str]
    tally: Tally
    seconds: float

    @property
    def missing_from_list(self) -> set[str]:
        return self.replied_runs - self.listed_runs

    def failures(self) -> list[str]:
        problems = []
        if self.integrity != ["ok"]:
            problems.append(f"integrity_check: {self.integrity[:3]}")
        if self.starts_with_several_runs:
            problems.append(f"identical starts that made several runs: {self.starts_with_several_runs}")
        if self.replies_disagreeing:
            problems.append(f"identical starts answered with different runs: {self.replies_disagreeing}")
        if self.missing_from_list:
            problems.append(f"runs started but not listed: {sorted(self.missing_from_list)}")
        return problems


def emulator() -> EmulatorThread:
    # Unlimited: the starts exceed the production per-token limits on purpose; this is about the journal.
    return EmulatorThread(EmulatorConfig(speed=50.0, rate_limit_per_minute=0, start_limits=(0, 0, 0)))


def server_env(base_url: str, state_dir: Path, home: Path, token: str | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "MOGPLEX_BASE_URL": base_url,
        "MOGPLEX_MCP_STATE_DIR": str(state_dir),
        "MOGPLEX_LOG_LEVEL": "warning",
        "MOGPLEX_RETRY_BUDGET_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    if token is not None:
        env["MOGPLEX_TOKEN"] = token
    return env


@dataclass
class Server:
    client: Client
    pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def stdio_server(env: dict[str, str], log: Path) -> AsyncIterator[Server]:
    """A host's stdio server; leaving the block closes its stdin (the host disconnecting)."""
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:], env=env, cwd=str(PROJECT_ROOT))
    with log.open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=30) as client:
            yield Server(client, _server_pid(env[_MARKER]))


def _server_pid(marker: str) -> int:
    """The stdio server this slot spawned (the SDK does not expose its pid): the child whose environment
    holds `marker` (several slots spawn servers at the same moment, so "the newest child" is not enough)."""
    tag = f"{_MARKER}={marker}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_of(int(entry)) == os.getpid() and tag in _environ(int(entry)).split(b"\0"):
            return int(entry)
    raise RuntimeError(f"no child process with {_MARKER}={marker}")


def _parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@asynccontextmanager
async def http_server(env: dict[str, str], log: Path) -> AsyncIterator[Server]:
    """A shared HTTP server with one client bringing its own bearer; SIGTERM at the end unless already gone."""
    port = _free_port()
    command = [*SERVE, "--transport", "http", "--port", str(port)]
    with log.open("ab") as errlog:
        process = await anyio.open_process(
            command, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog
        )
    try:
        await _wait_listening(port, process)
        headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
            Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="auto") as client,
        ):
            yield Server(client, process.pid)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def _wait_listening(port: int, process: Process) -> None:
    with anyio.fail_after(STARTUP_LIMIT_S):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"serve --transport http exited with {process.returncode} at startup")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.1)
                continue
            await stream.aclose()
            return


def _only_transport_errors(exc: BaseException) -> bool:
    """A client whose server died under it fails with these (wrapped in groups by the SDK's task groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_transport_errors(inner) for inner in exc.exceptions)
    transport = (anyio.ClosedResourceError, anyio.BrokenResourceError, MCPError, httpx2.HTTPError, OSError)
    return isinstance(exc, transport)


class Fleet:
    """The slots, the shared tally, and the upstream they all talk to."""

    def __init__(self, emu: EmulatorHandle, root: Path, seed: int) -> None:
        self.emu = emu
        self.root = root
        self.state_dir = root / "state"
        self.tally = Tally()
        self.rng = random.Random(seed)
        self.lives = 0

    async def run(self, slots: int, seconds: float, life: tuple[float, float]) -> Verdict:
        began = time.monotonic()
        deadline = began + seconds
        async with anyio.create_task_group() as tg:
            for slot in range(slots):
                tg.start_soon(self._slot, slot, deadline, life)
        listed = await self._listed_by_a_fresh_server()
        return self._verdict(listed, time.monotonic() - began)

    async def _slot(self, slot: int, deadline: float, life: tuple[float, float]) -> None:
        kind = "stdio" if slot % 2 == 0 else "http"
        generation = 0
        while time.monotonic() < deadline:
            stop = STOPS[(slot + generation) % len(STOPS)]
            generation += 1
            try:
                await self._one_life(kind, stop, slot, self.rng.uniform(*life))
            except Exception as exc:  # a server killed mid-call fails its client in many ways: the next one starts
                self.tally.cut_by_stop += 1
                if not _only_transport_errors(exc):
                    self.tally.stop_errors.append(f"{kind} {stop}: {exc!r}"[:300])
            self.tally.servers[f"{kind} {stop}"] += 1

    async def _one_life(self, kind: str, stop: str, slot: int, seconds: float) -> None:
        log = self.root / f"slot-{slot}.log"
        home = self.root / f"home-{slot}"
        env = server_env(self.emu.base_url, self.state_dir, home, DEMO_TOKEN if kind == "stdio" else None)
        self.lives += 1
        env[_MARKER] = str(self.lives)
        launch = stdio_server(env, log) if kind == "stdio" else http_server(env, log)
        async with launch as server, anyio.create_task_group() as tg:
            tg.start_soon(self._drive, server.client)
            await anyio.sleep(seconds)
            if stop != "disconnect":  # a signal while a call is in flight, as a host quitting does
                os.kill(server.pid, signal.SIGTERM if stop == "sigterm" else signal.SIGKILL)
                await anyio.sleep(0.3)
            tg.cancel_scope.cancel()

    async def _drive(self, client: Client) -> None:
        while True:
            if self.rng.random() < 0.5:
                await self._start(client)
            else:
                await self._read(client)

    async def _start(self, client: Client) -> None:
        start = self.tally.pick_start(self.rng)
        self.tally.starts += 1
        arguments = {
            "repoId": REPO_ID,
            "prompt": f"Stress start {start}: tidy the changelog",
            "createBranch": True,
            "workingBranch": f"{BRANCH_PREFIX}{start}",
        }
        result = await client.call_tool("start_run", arguments)
        if result.is_error or result.structured_content is None:
            self.tally.start_errors.append(" ".join(getattr(b, "text", "") for b in result.content)[:200])
            return
        self.tally.replies.setdefault(start, set()).add(str(result.structured_content["run"]["runId"]))

    async def _read(self, client: Client) -> None:
        self.tally.reads += 1
        known = [run for runs in self.tally.replies.values() for run in runs]
        choice = self.rng.random()
        if choice < 0.3 and known:
            result = await client.call_tool("get_run", {"runId": self.rng.choice(known)})
        elif choice < 0.55 and known:
            picked = sorted(set(self.rng.sample(known, min(3, len(known)))))
            result = await client.call_tool("wait_for_runs", {"runIds": picked, "timeoutSeconds": 1})
        elif choice < 0.8:
            result = await client.call_tool("list_runs", {"limit": 20})
        else:
            await client.list_resources()
            return
        if result.is_error:
            self.tally.read_errors += 1

    async def _listed_by_a_fresh_server(self) -> set[str]:
        env = server_env(self.emu.base_url, self.state_dir, self.root / "home-final", DEMO_TOKEN)
        env[_MARKER] = "final"
        listed: set[str] = set()
        async with stdio_server(env, self.root / "final.log") as server:
            cursor: str | None = None
            while True:
                arguments: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                result = await server.client.call_tool("list_runs", arguments)
                page = result.structured_content
                assert not result.is_error and page is not None, result.content
                listed |= {str(run["runId"]) for run in page["runs"]}
                cursor = page.get("nextCursor")
                if not cursor:
                    return listed

    def _verdict(self, listed: set[str], seconds: float) -> Verdict:
        per_start: Counter[int] = Counter()
        for run in self.emu.emulator.store.runs():
            working = str(run.branch.get("working", ""))
            if working.startswith(BRANCH_PREFIX):
                per_start[int(working.removeprefix(BRANCH_PREFIX))] += 1
        with sqlite3.connect(self.state_dir / JOURNAL_FILE_NAME) as db:
            integrity = [str(row[0]) for row in db.execute("PRAGMA integrity_check").fetchall()]
        replies = self.tally.replies
        return Verdict(
            integrity=integrity,
            upstream_runs=sum(per_start.values()),
            starts_with_several_runs={start: n for start, n in per_start.items() if n > 1},
            replies_disagreeing={start: runs for start, runs in replies.items() if len(runs) > 1},
            replied_runs={run for runs in replies.values() for run in runs},
            listed_runs=listed,
            tally=self.tally,
            seconds=seconds,
        )


async def stress(root: Path, *, slots: int, seconds: float, life: tuple[float, float], seed: int = 18) -> Verdict:
    """Run the fleet against a fresh emulator and state dir under `root`; the verdict says what held."""
    with emulator() as emu:
        return await Fleet(emu, root, seed).run(slots, seconds, life)


async def run(slots: int, seconds: float) -> Section:
    """The `journal_stress` benchmark: the suite's fleet, bigger and longer."""
    with tempfile.TemporaryDirectory(prefix="journal-stress-") as root:
        verdict = await stress(Path(root), slots=slots, seconds=seconds, life=(3.0, 10.0))
    tally = verdict.tally
    section = Section(
        "journal_stress",
        "Shared start journal (many processes)",
        f"{slots} slots, half `serve` over stdio and half `serve --transport http`, all on one state dir (one "
        f"journal file) against one in-process emulator (no rate limits), for {seconds:.0f} s. Each slot starts "
        "a server, drives it with one client in a closed loop (half `start_run`, two in three of them repeating "
        "one of the last few starts as a host retry does; the rest `get_run`, `wait_for_runs` 1 s, `list_runs`, "
        "`resources/list`), stops it after 3-10 s by client disconnect, SIGTERM or SIGKILL in rotation (often "
        "with a call in flight; an HTTP server whose client left is then ended by SIGTERM) and starts the next. "
        "Runs per start are counted in the emulator by the start's "
        "`workingBranch`; at the end a fresh server lists every run and `PRAGMA integrity_check` reads the file. "
        "The short version runs in the suite (tests/e2e/test_journal_stress.py, 4 slots, 20 s).",
    )
    stops = ", ".join(f"{name} {count}" for name, count in sorted(tally.servers.items()))
    section.add("servers started and stopped (kind, how)", f"{sum(tally.servers.values())}: {stops}")
    whole = verdict.integrity == ["ok"]
    section.add("PRAGMA integrity_check afterwards", ", ".join(verdict.integrity[:2]), "ok", whole)
    several = len(verdict.starts_with_several_runs) + len(verdict.replies_disagreeing)
    section.add(
        "identical starts: different starts → runs created upstream",
        f"{tally.starts} start_run calls ({tally.identical_starts} repeats) of {tally.next_start} different starts "
        f"→ {verdict.upstream_runs} runs; starts with more than one run: {several}",
        "0 with more than one",
        several == 0,
    )
    missing = len(verdict.missing_from_list)
    section.add(
        "runs answered to a client / listed by a fresh server",
        f"{len(verdict.replied_runs)} / {len(verdict.replied_runs & verdict.listed_runs)}",
        "all listed",
        missing == 0,
    )
    calls = tally.starts + tally.reads
    section.add(
        "tool calls across the fleet",
        f"{calls} in {verdict.seconds:.0f} s ({calls / verdict.seconds:.0f}/s); failed: {len(tally.start_errors)} "
        f"starts, {tally.read_errors} reads; {tally.cut_by_stop} clients lost their server mid-call "
        f"({len(tally.stop_errors)} of them in another way than a closed connection)",
    )
    section.notes.append(
        "On the code before issue 18's fix (`journal_file.py` opening and closing the database file while "
        "connected) the suite's 4-slot, 20 s version already failed all three checks: integrity_check reported "
        "out-of-order rows and missing index entries, 22 identical starts made 2-3 runs each, 25 answered runs "
        "were missing from the list."
    )
    return section
