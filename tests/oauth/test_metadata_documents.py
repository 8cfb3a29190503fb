"""Client ID metadata documents: the SDK client signs in with a URL as its client id (no registration), and the
fetch of such a URL cannot be turned against the server's network (private address, slow, huge, redirect)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import ok
from tests.oauth.documents import https_documents
from tests.oauth.support import (
    BrowserSignIn,
    MemoryStorage,
    RawFlow,
    new_page,
    oauth_client,
    oauth_provider,
    oauth_server,
    options_from_cli,
)
from tests.viewer.support import launched_browser

pytestmark = pytest.mark.anyio


async def test_the_sdk_client_signs_in_with_a_metadata_document_and_no_registration(tmp_path: Path) -> None:
    storage = MemoryStorage()
    async with (
        https_documents(tmp_path) as docs,
        oauth_server(tmp_path, allow_loopback_metadata=True, metadata_ca_file=str(docs.ca_file)) as server,
        launched_browser() as browser,
        httpx2.AsyncClient() as http,
    ):
        metadata = (await http.get(f"{server.issuer}/.well-known/oauth-authorization-server")).json()
        assert metadata["client_id_metadata_document_supported"] is True
        sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
        auth = oauth_provider(server.url, sign_in, storage, metadata_url=docs.url("client.json"))
        async with oauth_client(server.url, auth) as signed_in:
            await ok(signed_in, "list_repos")
        assert storage.client_info is not None and storage.client_info.client_id == docs.url("client.json")
        assert "Metadata Client" in sign_in.page_html[0]  # the page names the client from its document
        assert docs.hits == ["client.json"]  # fetched once, then cached


async def test_a_metadata_url_on_a_private_address_is_never_fetched(tmp_path: Path) -> None:
    async with (
        https_documents(tmp_path) as docs,
        oauth_server(tmp_path, metadata_ca_file=str(docs.ca_file)) as server,  # loopback not allowed here
        httpx2.AsyncClient() as http,
    ):
        raw = RawFlow(server, http)
        for url in (docs.url("client.json"), "https://localhost/client.json", "https://10.0.0.1/c.json"):
            raw.client_id = url
            refused = await raw.authorize()
            assert refused.status_code == 400 and "not found" in refused.json()["error_description"]
        assert docs.hits == []


async def test_slow_huge_redirecting_or_impostor_documents_are_refused_within_the_time_cap(tmp_path: Path) -> None:
    async with (
        https_documents(tmp_path) as docs,
        oauth_server(
            tmp_path, allow_loopback_metadata=True, metadata_ca_file=str(docs.ca_file), metadata_fetch_seconds=1.0
        ) as server,
        httpx2.AsyncClient(timeout=20) as http,
    ):
        raw = RawFlow(server, http)
        for name in ("slow.json", "huge.json", "redirect.json", "impostor.json"):
            raw.client_id = docs.url(name)
            with anyio.fail_after(15):  # the slow document takes 30 s: the server's 1 s cap must answer first
                refused = await raw.authorize()
            assert refused.status_code == 400, name
        assert sorted(docs.hits) == ["huge.json", "impostor.json", "redirect.json", "slow.json"]  # never followed


async def test_a_flood_of_metadata_urls_fetches_at_most_the_servers_budget(tmp_path: Path) -> None:
    budget = 12  # set as an operator would: --oauth-metadata-fetches-per-minute
    flags = options_from_cli("--oauth-metadata-fetches-per-minute", str(budget))
    async with (
        https_documents(tmp_path) as docs,
        oauth_server(tmp_path, allow_loopback_metadata=True, metadata_ca_file=str(docs.ca_file), **flags) as server,
        httpx2.AsyncClient(timeout=20) as http,
    ):
        raw = RawFlow(server, http)
        statuses = []
        for number in range(budget + 5):
            raw.client_id = docs.url(f"client-{number}.json")
            statuses.append((await raw.authorize()).status_code)
        assert statuses == [302] * budget + [400] * 5  # known clients reach the sign-in page
        assert len(docs.hits) == budget
