"""The shared gateway under attack: RSS per open session, and floods of initialize POSTs that must leave RSS flat."""

from __future__ import annotations

import secrets
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2

from bench.emulator_proc import EmulatorProcess, emulator_process
from bench.measure import rss_mb
from bench.report import Section
from bench.servers import HttpServer, http_server, server_env, settle

CONCURRENCY = 32
FLAT_TOLERANCE_MB = 5.0
SESSION_TARGET_KB = 64.0
DEFAULT_MAX_SESSIONS = 1000  # `--max-sessions`' default
# A shared server: bound to loopback but naming a host, so no MOGPLEX_TOKEN fallback and a bearer is required.
SHARED = ("--allowed-host", "127.0.0.1")
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@dataclass(frozen=True)
class Flood:
    requests: int
    statuses: Counter[int]
    rss_before: float
    rss_after: float
    seconds: float


async def _open(http: httpx2.AsyncClient, url: str, token: str) -> str | None:
    """One handshake (initialize + initialized) with `token`; the session id, or None if refused."""
    auth = {"Authorization": f"Bearer {token}"}
    opened = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **auth})
    session_id = opened.headers.get("mcp-session-id")
    if opened.status_code != 200 or session_id is None:
        return None
    await http.post(url, json=INITIALIZED, headers={**MCP_HEADERS, **auth, "Mcp-Session-Id": session_id})
    return session_id


async def _flood(server: HttpServer, requests: int, *, made_up_bearers: bool) -> Flood:
    """`requests` initialize POSTs, CONCURRENCY at a time: without a bearer, or each with a new made-up one."""
    statuses: Counter[int] = Counter()
    limiter = anyio.Semaphore(CONCURRENCY)
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx2.AsyncClient(timeout=30, limits=limits) as http:
        before = rss_mb(server.pid)
        started = anyio.current_time()

        async def one() -> None:
            async with limiter:
                headers = dict(MCP_HEADERS)
                if made_up_bearers:
                    headers["Authorization"] = f"Bearer mog_{secrets.token_hex(12)}"
                statuses[(await http.post(server.url, json=INITIALIZE, headers=headers)).status_code] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(requests):
                tg.start_soon(one)
        seconds = anyio.current_time() - started
    await settle(1.0)
    return Flood(requests, statuses, before, rss_mb(server.pid), seconds)


async def _real_user_gets_in(server: HttpServer, token: str) -> bool:
    async with httpx2.AsyncClient(timeout=30) as http:
        return await _open(http, server.url, token) is not None


async def _per_session(emulator: EmulatorProcess, state_dir: Path, sessions: int) -> tuple[float, float]:
    """RSS before and after `sessions` idle handshake-era sessions of one token (caps raised to fit them)."""
    caps = ("--max-sessions-per-token", str(sessions), "--max-sessions", str(sessions))
    with http_server(server_env(emulator, state_dir), args=(*SHARED, *caps)) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            for _ in range(20):  # warm the code paths first, then close those sessions
                session_id = await _open(http, server.url, emulator.token)
                headers = {"Authorization": f"Bearer {emulator.token}", "Mcp-Session-Id": str(session_id)}
                await http.delete(server.url, headers=headers)
            await settle(1.0)
            before = rss_mb(server.pid)
            limiter = anyio.Semaphore(8)

            async def one() -> None:
                async with limiter:
                    if await _open(http, server.url, emulator.token) is None:
                        raise RuntimeError("a session was refused while measuring RSS per session")

            async with anyio.create_task_group() as tg:
                for _ in range(sessions):
                    tg.start_soon(one)
            await settle(1.0)
            return before, rss_mb(server.pid)


def _describe(flood: Flood) -> str:
    shown = ", ".join(f"{count} × {status}" for status, count in sorted(flood.statuses.items()))
    return (
        f"{shown} in {flood.seconds:.1f} s; RSS {flood.rss_before:.1f} → {flood.rss_after:.1f} MB "
        f"({flood.rss_after - flood.rss_before:+.1f})"
    )


async def run(flood_requests: int, sessions: int) -> Section:
    section = Section(
        key="gateway",
        title="Shared gateway under attack",
        method=(
            "One `serve --transport http --allowed-host 127.0.0.1` process (a shared server: a bearer is required, "
            "no MOGPLEX_TOKEN fallback), RSS (VmRSS) read from /proc. RSS per session: after 20 warm-up sessions "
            f"(opened and deleted), {sessions} idle handshake-era sessions (initialize + initialized) of one token, "
            "with the caps raised to hold them; (RSS after − before) / sessions. Floods: "
            f"{flood_requests} `initialize` POSTs without any `Authorization`, {CONCURRENCY} at a time over keep-alive "
            f"connections; then up to {3 * DEFAULT_MAX_SESSIONS} each with a new made-up bearer (every one a "
            "different caller to the gateway, at the default caps: 32 per token, 1000 in all, so past 1000 each "
            "opening evicts a never-used session); RSS 1 s after each flood against before it, then one real "
            "user's handshake."
        ),
    )
    with emulator_process(rate_limit=0) as emulator, tempfile.TemporaryDirectory(prefix="mogplex-bench-gw-") as tmp:
        before, after = await _per_session(emulator, Path(tmp) / "sessions", sessions)
        per_session_kb = (after - before) * 1024 / sessions
        section.add(
            f"RSS per open session ({sessions} idle sessions)",
            f"{per_session_kb:.0f} KB ({before:.1f} → {after:.1f} MB)",
            f"≤ {SESSION_TARGET_KB:.0f} KB",
            per_session_kb <= SESSION_TARGET_KB,
        )
        with http_server(server_env(emulator, Path(tmp) / "flood"), args=SHARED) as server:
            await _real_user_gets_in(server, emulator.token)  # warm-up: one real session exists throughout
            await settle(1.0)
            anonymous = await _flood(server, flood_requests, made_up_bearers=False)
            growth = anonymous.rss_after - anonymous.rss_before
            section.add(
                f"{flood_requests} initialize POSTs without a bearer",
                _describe(anonymous),
                f"all 401, RSS within {FLAT_TOLERANCE_MB:g} MB",
                set(anonymous.statuses) == {401} and growth <= FLAT_TOLERANCE_MB,
            )
            got_in = await _real_user_gets_in(server, emulator.token)
            section.add("a real user's initialize right after", "200" if got_in else "refused", "200", got_in)
            # Past the cap every opening evicts a session (a few ms each): 3× the cap shows the bound.
            made_up_requests = min(flood_requests, 3 * DEFAULT_MAX_SESSIONS)
            made_up = await _flood(server, made_up_requests, made_up_bearers=True)
            bound_mb = DEFAULT_MAX_SESSIONS * max(per_session_kb, 1.0) / 1024 * 1.5 + FLAT_TOLERANCE_MB
            section.add(
                f"{made_up_requests} initialize POSTs, each with a new made-up bearer",
                _describe(made_up),
                f"RSS growth bounded by the {DEFAULT_MAX_SESSIONS}-session cap (≤ {bound_mb:.0f} MB)",
                made_up.rss_after - made_up.rss_before <= bound_mb,
            )
            got_in = await _real_user_gets_in(server, emulator.token)
            section.add("a real user's initialize right after", "200" if got_in else "refused", "200", got_in)
    return section
