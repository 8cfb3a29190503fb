"""One shared gateway, several users: nobody's traffic can take another's upstream budget (issue 11, finding 2).

Each test runs the real HTTP server under uvicorn in front of the emulator on loopback, with real MCP
clients sending their own bearers; what reached the upstream is read from the emulator's request log
(per token: `token_tag`, and the most requests of one token it ever had in flight at once).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorHandle, running_emulator
from mogplex_mcp.emulator.traffic import token_tag
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app, running_http
from tests.e2e.support import REPO_ID, UNKNOWN_TOKEN, USER_B_TOKEN, emulator_config, error, http_client, ok
from tests.server.harness import FAST_FOLLOW
from tests.server.resources.test_run_resources import until

pytestmark = pytest.mark.anyio

REPOS = "/api/v1/mogplex/repos"
# Small budgets, so a handful of calls fills them: 4 request connections, 2 of them per token.
BUDGETS: dict[str, Any] = {"upstream_connections": 4, "upstream_per_token": 2}


@dataclass
class Gateway:
    url: str
    emu: EmulatorHandle
    states: list[AppState]

    @property
    def state(self) -> AppState:
        return self.states[-1]

    def upstream_requests(self, token: str, path: str | None = None) -> int:
        tag = token_tag(token)
        records = self.emu.emulator.log.snapshot()
        return sum(1 for r in records if r.token_tag == tag and (path is None or r.path == path))

    def peak(self, token: str) -> int:
        return self.emu.emulator.log.peak(token_tag(token))


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[Gateway]:
    """The HTTP server (no MOGPLEX_TOKEN: every caller brings a bearer) in front of an observed-flavour emulator."""
    config = emulator_config(
        flavor="observed", default_scenario="endless", rate_limit_per_minute=10_000, start_limits=(0, 0, 0)
    )
    async with running_emulator(config) as emu:
        values: dict[str, Any] = {"token": None, "base_url": emu.base_url, "state_dir": tmp_path / "state"}
        values |= {"retry_budget_seconds": 3.0, "read_timeout": 5.0} | BUDGETS | settings
        states: list[AppState] = []
        app = build_http_app(Settings(**values), HttpOptions(port=0), follow=FAST_FOLLOW, on_state=states.append)
        async with running_http(app) as url:
            yield Gateway(url, emu, states)


async def test_twenty_followed_streams_leave_the_request_pool_to_another_user(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g, http_client(g.url, "legacy", DEMO_TOKEN) as a:
        run_ids = [
            (await ok(a, "start_run", repoId=REPO_ID, prompt=f"Follow me {n}."))["run"]["runId"] for n in range(20)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # subscribe_resource is the handshake era's API
            for run_id in run_ids:
                await a.subscribe_resource(f"mogplex://runs/{run_id}")
        gate = g.state.pool.gate
        await until(lambda: gate.streams_of(DEMO_TOKEN) == 20)
        assert gate.streams_open == 20 > g.state.settings.upstream_connections
        async with http_client(g.url, "legacy", USER_B_TOKEN) as b:
            repos = await ok(b, "list_repos")
        assert repos["repos"], "user B is answered while A's 20 streams stay open"
        assert gate.streams_of(DEMO_TOKEN) == 20, "the streams were not dropped to make room"
        assert g.peak(DEMO_TOKEN) >= 20, "the emulator held A's 20 streams open at once"


async def test_a_flood_with_a_made_up_bearer_reaches_upstream_a_handful_of_times(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g, http_client(g.url, "legacy", UNKNOWN_TOKEN) as intruder:
        messages: list[str] = []

        async def call() -> None:
            try:
                messages.append(await error(intruder, "list_repos"))
            except Exception as exc:
                messages.append(f"door: {exc}")

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(call)
        async with http_client(g.url, "legacy", USER_B_TOKEN) as b:
            assert (await ok(b, "list_repos"))["repos"]
    assert len(messages) == 40 and all("401" in m or m.startswith("door:") for m in messages)
    assert g.upstream_requests(UNKNOWN_TOKEN) <= BUDGETS["upstream_per_token"], "the rest were refused locally"
    assert UNKNOWN_TOKEN not in "".join(messages)


async def test_one_user_holds_at_most_its_share_of_upstream_concurrency(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g:
        g.emu.emulator.inject_fault("delay", count=1_000, method="GET", path=REPOS, delay=0.2)
        async with http_client(g.url, "legacy", DEMO_TOKEN) as a, http_client(g.url, "legacy", USER_B_TOKEN) as b:
            await ok(a, "list_repos")  # both tokens known upstream before the crowd arrives
            await ok(b, "list_repos")
            answered: list[str] = []

            async def call(client: Client, who: str) -> None:
                await ok(client, "list_repos")
                answered.append(who)

            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(call, a, "a")
                tg.start_soon(call, b, "b")
    share = BUDGETS["upstream_per_token"]
    assert g.peak(DEMO_TOKEN) == share, "A's 12 calls ran exactly its share at a time"
    assert g.peak(USER_B_TOKEN) >= 1 and answered.count("b") == 1 and answered.count("a") == 12
    assert g.upstream_requests(DEMO_TOKEN, REPOS) == 13


async def test_followers_past_the_tokens_stream_share_follow_by_polling(tmp_path: Path) -> None:
    async with gateway(tmp_path, upstream_streams_per_token=2) as g, http_client(g.url, "legacy", DEMO_TOKEN) as a:
        run_ids = [(await ok(a, "start_run", repoId=REPO_ID, prompt=f"Crowd {n}."))["run"]["runId"] for n in range(4)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for run_id in run_ids:
                await a.subscribe_resource(f"mogplex://runs/{run_id}")
        hub, gate = g.state.hub, g.state.pool.gate
        followers = [hub.get(DEMO_TOKEN, run_id) for run_id in run_ids]
        assert all(follower is not None for follower in followers)
        seen = [follower.event_count for follower in followers if follower is not None]
        await until(lambda: sum(f.streaming for f in followers if f is not None) == 2)
        await until(lambda: all(f.event_count > n for f, n in zip(followers, seen, strict=True) if f is not None))
        assert gate.streams_of(DEMO_TOKEN) == 2, "never more than the token's share of streams"
        assert all(f.active and f.error is None for f in followers if f is not None), "all four keep following"
