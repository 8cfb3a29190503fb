"""Attacks on the OAuth front door, each a test, over plain HTTP against the real server and emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import UNKNOWN_TOKEN
from tests.oauth.support import REDIRECT_URI, OAuthServer, RawFlow, form_fields, oauth_server
from tests.server.transport.support import INITIALIZE, MCP_HEADERS

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def flow(tmp_path: Path, **oauth: Any) -> AsyncIterator[tuple[OAuthServer, RawFlow]]:
    async with oauth_server(tmp_path, **oauth) as server, httpx2.AsyncClient(timeout=20) as http:
        yield server, RawFlow(server, http)


async def mcp_status(server: OAuthServer, access_token: str) -> int:
    async with httpx2.AsyncClient() as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {access_token}"}
        return (await http.post(server.url, json=INITIALIZE, headers=headers)).status_code


def pat_checks(server: OAuthServer) -> int:
    return len([r for r in server.emu.emulator.requests if r.path.endswith("/repos")])


async def test_a_redirect_uri_that_is_not_registered_exactly_gets_no_redirect(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        await raw.register()
        for attempt in (
            REDIRECT_URI + "/evil",
            REDIRECT_URI.replace("/callback", "/callbacK"),
            "https://evil.example/cb",
        ):
            refused = await raw.authorize(redirect_uri=attempt)
            assert refused.status_code == 400 and "location" not in refused.headers
            assert "not registered" in refused.json()["error_description"]


async def test_a_code_is_single_use(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        await raw.register()
        code = await raw.code(DEMO_TOKEN)
        assert (await raw.exchange(code)).status_code == 200
        replayed = await raw.exchange(code)
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"


async def test_pkce_is_required_and_only_s256(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        await raw.register()
        for overrides in ({"code_challenge": None}, {"code_challenge_method": "plain"}):
            refused = await raw.authorize(**overrides)
            query = parse_qs(urlsplit(refused.headers.get("location", "")).query)
            assert refused.status_code == 302 and query["error"] == ["invalid_request"]
            assert not refused.headers["location"].startswith(raw.server.issuer)  # back to the client, no sign-in
        wrong_verifier = await raw.exchange(await raw.code(DEMO_TOKEN), verifier="w" * 64)
        assert wrong_verifier.status_code == 400 and wrong_verifier.json()["error"] == "invalid_grant"


async def test_a_token_for_another_resource_is_never_issued_and_foreign_tokens_are_refused(tmp_path: Path) -> None:
    async with flow(tmp_path) as (server, raw), oauth_server(tmp_path / "other") as other:
        await raw.register()
        refused = await raw.authorize(resource="https://other.example/mcp")
        assert parse_qs(urlsplit(refused.headers["location"]).query)["error"] == ["invalid_target"]
        # A token another deployment issued (its own key and store) means nothing here.
        elsewhere = RawFlow(other, raw.http)
        foreign = await elsewhere.tokens(DEMO_TOKEN)
        assert await mcp_status(other, foreign["access_token"]) == 200
        assert await mcp_status(server, foreign["access_token"]) == 401


async def test_a_replayed_refresh_token_revokes_the_whole_grant(tmp_path: Path) -> None:
    async with flow(tmp_path) as (server, raw):
        first = await raw.tokens(DEMO_TOKEN)
        second = (await raw.refresh(first["refresh_token"])).json()
        assert await mcp_status(server, second["access_token"]) == 200
        replay = await raw.refresh(first["refresh_token"])  # someone else kept a copy of the old one
        assert replay.status_code == 400 and "revoked" in replay.json()["error_description"]
        assert await mcp_status(server, second["access_token"]) == 401
        assert (await raw.refresh(second["refresh_token"])).status_code == 400


async def test_the_sign_in_form_refuses_cross_site_submissions(tmp_path: Path) -> None:
    async with flow(tmp_path) as (server, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        fields = form_fields(page.text) | {"pat": DEMO_TOKEN, "access": "write", "action": "allow"}
        url = f"{server.issuer}/oauth/sign-in"
        async with httpx2.AsyncClient() as attacker:  # the victim's browser without the page's cookie
            no_cookie = await attacker.post(url, data=fields)
        foreign_origin = await raw.http.post(url, data=fields, headers={"Origin": "https://evil.example"})
        forged_token = await raw.http.post(url, data=fields | {"csrf": "forged"})
        _, other_page = await raw.sign_in_page(state="another")
        swapped = await raw.http.post(url, data=fields | {"request": form_fields(other_page.text)["request"]})
        for refused in (no_cookie, foreign_origin, forged_token, swapped):
            assert refused.status_code == 403 and "location" not in refused.headers
        assert pat_checks(server) == 0  # nothing was checked, nothing issued
        assert (await raw.submit(page, DEMO_TOKEN)).status_code == 303  # the real page still works


async def test_the_sign_in_page_cannot_be_framed_and_loads_nothing(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text and "http" not in page.text.split("<form")[0].replace(REDIRECT_URI, "")


async def test_no_redirect_goes_anywhere_but_the_registered_uri(tmp_path: Path) -> None:
    async with flow(tmp_path) as (server, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        sealed = form_fields(page.text)["request"]
        tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
        for bad in (tampered, "", "x" * 20_000):
            shown = await raw.http.get(f"{server.issuer}/oauth/sign-in", params={"request": bad})
            assert shown.status_code == 400 and "location" not in shown.headers
        denied = await raw.submit(page, "", action="deny")
        assert denied.status_code == 303 and denied.headers["location"].startswith(REDIRECT_URI + "?")
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]


async def test_a_bad_pat_gets_a_clear_message_on_the_page_and_no_code(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        refused = await raw.submit(page, UNKNOWN_TOKEN)
        assert refused.status_code == 400 and "did not accept this token (401)" in refused.text
        assert UNKNOWN_TOKEN not in refused.text and "location" not in refused.headers


async def test_registration_floods_are_limited_per_address_and_overall_and_store_nothing(tmp_path: Path) -> None:
    async with flow(tmp_path, registrations_per_minute=3, registrations_per_minute_total=1000) as (_, raw):
        statuses = [(await raw.register()).status_code for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        assert not list((tmp_path / "state").glob("oauth-grants*")) or _rows(tmp_path) == 0
    async with flow(tmp_path / "b", registrations_per_minute=100, registrations_per_minute_total=4) as (_, raw):
        statuses = [(await raw.register()).status_code for _ in range(6)]
        assert statuses == [201] * 4 + [429] * 2


async def test_sign_in_floods_are_limited_before_anything_reaches_mogplex(tmp_path: Path) -> None:
    async with flow(tmp_path, sign_ins_per_minute=3) as (server, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        statuses = [(await raw.submit(page, UNKNOWN_TOKEN)).status_code for _ in range(6)]
        assert statuses == [400, 400, 400, 429, 429, 429]
        assert pat_checks(server) == 3


def _rows(tmp_path: Path) -> int:
    import sqlite3

    db = sqlite3.connect(tmp_path / "state" / "oauth-grants.sqlite3")
    try:
        return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("codes", "grants", "tokens"))  # noqa: S608
    finally:
        db.close()


async def test_an_expired_sign_in_link_issues_nothing(tmp_path: Path) -> None:
    async with flow(tmp_path, sign_in_minutes=1 / 60) as (server, raw):
        await raw.register()
        _, page = await raw.sign_in_page()
        await anyio.sleep(1.5)  # past the link's one-second life
        late = await raw.submit(page, DEMO_TOKEN)
        assert late.status_code == 400 and "location" not in late.headers and "expired" in late.text
        assert pat_checks(server) == 0


async def test_a_redirect_uri_cannot_write_into_the_pages_security_policy(tmp_path: Path) -> None:
    async with flow(tmp_path) as (_, raw):
        sneaky = "x-app://a;frame-ancestors;script-src/cb"
        assert (await raw.register(redirect_uri=sneaky)).status_code == 201
        _, page = await raw.sign_in_page(redirect_uri=sneaky)
        csp = page.headers["content-security-policy"]
        assert "form-action 'self' x-app:;" in csp and csp.count("frame-ancestors") == 1 and "script-src" not in csp
