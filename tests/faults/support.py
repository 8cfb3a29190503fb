"""Fault-suite tools: a transport that records what the client sent, and the no-duplicate-run checker.

The checker reads only the emulator's side (its request log and its Idempotency-Key table), so it judges
any client — ours, or a deliberately broken one — by what actually reached the upstream.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client

from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import Emulator, EmulatorConfig, running_emulator
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.state import AppState
from tests.server.harness import FAST_FOLLOW, Mode, Session, settings_for

RUNS_PATH = "/api/v1/mogplex/runs"


@dataclass(frozen=True)
class SentStart:
    """One POST /runs attempt as the client put it on the wire."""

    prompt: str
    idempotency_key: str | None


class RecordingTransport(httpx2.AsyncBaseTransport):
    """A real loopback transport that notes every POST /runs attempt (prompt and Idempotency-Key) it sends."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.starts: list[SentStart] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and request.url.path == RUNS_PATH:
            body = json.loads(request.content)
            self.starts.append(SentStart(str(body.get("prompt")), request.headers.get("idempotency-key")))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def keys_by_prompt(self) -> dict[str, set[str | None]]:
        keys: dict[str, set[str | None]] = defaultdict(set)
        for start in self.starts:
            keys[start.prompt].add(start.idempotency_key)
        return dict(keys)


@dataclass
class DuplicateReport:
    """What the upstream ended up with: runs per distinct start request, and which requests got more than one."""

    runs_by_request: dict[str, set[str]] = field(default_factory=dict)
    untraced_runs: set[str] = field(default_factory=set)

    @property
    def duplicates(self) -> dict[str, set[str]]:
        return {request: runs for request, runs in self.runs_by_request.items() if len(runs) > 1}

    @property
    def clean(self) -> bool:
        return not self.duplicates and not self.untraced_runs


def duplicate_runs(emulator: Emulator) -> DuplicateReport:
    """Group the emulator's runs by the normalized start request that created them.

    Every run was created under an Idempotency-Key that some POST /runs carried; the emulator remembers
    each key's normalized body. Two runs with one body mean one logical start became two runs: the
    thing a retried start must never do. A run no logged key explains is reported too.
    """
    report = DuplicateReport()
    keys = {r.idempotency_key for r in emulator.requests if r.method == "POST" and r.path == RUNS_PATH}
    traced: set[str] = set()
    for key in keys:
        entry = emulator.store.key(key) if key is not None else None
        if entry is None:
            continue
        report.runs_by_request.setdefault(entry.fingerprint, set()).add(entry.run_id)
        traced.add(entry.run_id)
    report.untraced_runs = set(emulator.run_ids()) - traced
    return report


def prompt_of(fingerprint: str) -> str:
    """The prompt inside an emulator request fingerprint (its canonical JSON of the normalized body)."""
    return str(json.loads(fingerprint).get("prompt"))


@asynccontextmanager
async def served(
    tmp_path: Path,
    mode: Mode = "legacy",
    *,
    config: EmulatorConfig | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    follow: FollowSettings = FAST_FOLLOW,
    **overrides: Any,
) -> AsyncIterator[Session]:
    """The harness's session, with the upstream transport as a seam (the harness has none)."""
    async with running_emulator(config or EmulatorConfig(speed=50.0)) as emu:
        settings = settings_for(emu, tmp_path / "state", **overrides)
        states: list[AppState] = []
        server = create_server(settings, transport=transport, follow=follow, on_state=states.append)
        async with Client(server, mode=mode) as client:
            yield Session(client=client, emulator=emu, settings=settings, states=states)


def tool_bound(settings: Settings) -> float:
    """The longest one tool call may take: its upstream budget (retry budget + 5 s) plus the 2 s backstop."""
    return settings.retry_budget_seconds + 5.0 + 2.0
