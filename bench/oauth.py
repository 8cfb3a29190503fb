"""The OAuth front door's costs: a tool call authorised by an access token vs by the PAT itself, and sign-ins
under load (each one a registration, /authorize, the sign-in page, its form with a PAT check, /token)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull

from bench.emulator_proc import emulator_process
from bench.measure import Summary, cpu_seconds
from bench.per_call import WARMUP_CALLS, Path_, _measure, _tool_call
from bench.report import Section
from bench.servers import free_port, http_server, server_env
from mogplex_mcp.runs.local.grants import LocalGrantStore
from mogplex_mcp.server.transport.oauth.clients import MetadataDocuments
from mogplex_mcp.server.transport.oauth.keys import Keys
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions
from mogplex_mcp.server.transport.oauth.provider import FrontDoorProvider, SignInRequest

TARGET_ADDED_MS = 0.3
SIGN_IN_CONCURRENCY = 8
REDIRECT_URI = "http://127.0.0.1:9/callback"
PAT = "with a PAT bearer"
TOKEN = "with an OAuth access token"


async def sign_in(http: httpx2.AsyncClient, issuer: str, pat: str) -> str:
    """One whole sign-in as a client and its user make it; the access token."""
    registered = await http.post(
        f"{issuer}/register",
        json={"redirect_uris": [REDIRECT_URI], "client_name": "bench", "token_endpoint_auth_method": "none"},
    )
    client_id = registered.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": f"{issuer}/mcp",
    }  # fmt: skip
    authorized = await http.get(f"{issuer}/authorize", params=params)
    page = await http.get(authorized.headers["location"])
    cookies = {name: value for name, value in page.cookies.items()}
    fields = {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', page.text)}
    form = {"request": fields["request"], "csrf": fields["csrf"], "pat": pat, "access": "write", "action": "allow"}
    done = await http.post(f"{issuer}/oauth/sign-in", data=form, cookies=cookies, headers={"Origin": issuer})
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    token = await http.post(
        f"{issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "client_id": client_id, "code_verifier": verifier, "resource": f"{issuer}/mcp"},
    )  # fmt: skip
    access: str = token.json()["access_token"]
    return access


async def run(calls: int, sign_ins: int) -> Section:
    section = Section(
        key="oauth",
        title="OAuth front door",
        method=(
            f"One server process with `--public-url` on loopback (SQLite grant store), the emulator behind it. "
            f"Per call: `get_run` on a running run through two handshake-era `mcp.Client`s on the same server, one "
            f"sending the PAT as its bearer, one an access token from a real sign-in; {calls} calls each after "
            f"{WARMUP_CALLS} warm-up calls, interleaved. The token's added cost is its lookup (token and grant rows), "
            f"opening the sealed PAT (AES-GCM) and the header rewrite. Sign-ins: {sign_ins} complete flows "
            f"(register, /authorize, page, form with a PAT check upstream, /token), {SIGN_IN_CONCURRENCY} at a "
            "time; wall time per sign-in and the server's CPU time per sign-in (from /proc)."
        ),
    )
    with emulator_process(rate_limit=0) as emulator, tempfile.TemporaryDirectory(prefix="mogplex-bench-oauth-") as tmp:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        flags = ("--allowed-host", "127.0.0.1", "--public-url", issuer, "--oauth-sign-ins-per-minute", "100000",
                 "--oauth-sign-ins-per-minute-total", "100000", "--oauth-registrations-per-minute", "100000",
                 "--oauth-registrations-per-minute-total", "100000")  # fmt: skip
        with http_server(server_env(emulator, Path(tmp) / "state"), args=flags, port=port) as served:
            async with httpx2.AsyncClient(timeout=30) as http:
                (run_id,) = await emulator.create_runs(http, 1, "endless")
                access = await sign_in(http, issuer, emulator.token)
            paths = await _per_call(served.url, emulator.token, access, run_id, calls)
            _report_calls(section, paths)
            resolve_us = await _resolve_cost(Path(tmp), calls * 10)
            section.add(
                "resolving an access token in-process (token + grant lookup, AES-GCM open): mean",
                f"{resolve_us:.0f} µs",
                f"≤ {TARGET_ADDED_MS * 1000:.0f} µs",
                resolve_us <= TARGET_ADDED_MS * 1000,
            )
            await _sign_ins(section, issuer, emulator.token, served.pid, sign_ins)
    return section


async def _per_call(url: str, pat: str, access: str, run_id: str, calls: int) -> dict[str, Path_]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {pat}"}, timeout=30) as with_pat,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {access}"}, timeout=30) as with_token,
        Client(streamable_http_client(url, http_client=with_pat), mode="legacy") as pat_client,
        Client(streamable_http_client(url, http_client=with_token), mode="legacy") as token_client,
    ):
        paths = {
            PAT: Path_(_tool_call(pat_client, "get_run", {"runId": run_id})),
            TOKEN: Path_(_tool_call(token_client, "get_run", {"runId": run_id})),
        }
        await _measure(paths, calls)
    return paths


def _report_calls(section: Section, paths: dict[str, Path_]) -> None:
    pat, token = Summary.of(paths[PAT].wall_ms), Summary.of(paths[TOKEN].wall_ms)
    section.add(f"`get_run` {PAT}: median / p99", f"{pat.median:.2f} / {pat.p99:.2f} ms")
    added = token.median - pat.median
    section.add(
        f"`get_run` {TOKEN}: added median / added p99 (ratio)",
        f"+{added:.2f} / +{token.p99 - pat.p99:.2f} ms ({token.median / pat.median:.2f}×)",
        f"≤ +{TARGET_ADDED_MS} ms median",
        added <= TARGET_ADDED_MS,
    )


async def _resolve_cost(directory: Path, count: int) -> float:
    """What the gateway adds per request for an access token, without the transport's noise: µs per resolve."""
    options = OAuthOptions(public_url="http://127.0.0.1:1")
    store = LocalGrantStore(directory / "resolve.sqlite3")
    try:
        provider = FrontDoorProvider(options, Keys([secrets.token_bytes(32)]), store, MetadataDocuments(options))
        scopes = ("runs:read", "runs:write")
        request = SignInRequest(
            "bench", None, REDIRECT_URI, True, "x" * 43, None, scopes, options.resource, time.time() + 600
        )
        client = OAuthClientInformationFull(client_id="bench", redirect_uris=[REDIRECT_URI])
        code = await provider.load_authorization_code(
            client, await provider.issue_code(request, "mog_" + "b" * 30, "fingerprint", scopes)
        )
        assert code is not None
        access = (await provider.exchange_authorization_code(client, code)).access_token
        started = time.perf_counter()
        for _ in range(count):
            assert await provider.resolve(access) is not None
        return (time.perf_counter() - started) / count * 1e6
    finally:
        store.close()


async def _sign_ins(section: Section, issuer: str, pat: str, pid: int, count: int) -> None:
    durations: list[float] = []
    limiter = anyio.Semaphore(SIGN_IN_CONCURRENCY)

    async def one() -> None:
        async with limiter, httpx2.AsyncClient(timeout=60) as http:
            started = time.perf_counter()
            await sign_in(http, issuer, pat)
            durations.append((time.perf_counter() - started) * 1000)

    cpu_before = cpu_seconds(pid)
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    elapsed = time.perf_counter() - began
    spent = Summary.of(durations)
    section.add(
        f"sign-in, {SIGN_IN_CONCURRENCY} at a time: median / p99 per flow",
        f"{spent.median:.1f} / {spent.p99:.1f} ms ({count / elapsed:.1f} sign-ins/s)",
    )
    section.add("server CPU per sign-in", f"{(cpu_seconds(pid) - cpu_before) / count * 1000:.2f} ms")
