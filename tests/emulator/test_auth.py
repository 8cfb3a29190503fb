"""Auth and routing at the edge: 401/403, production's login redirect, the www. redirect, bad run ids."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import EmulatorConfig, running_emulator
from mogplex_mcp.emulator.config import Flavor
from tests.emulator.support import API, MISSING_UUID, error_of, served

pytestmark = pytest.mark.anyio


async def test_documented_missing_token_is_401_with_resource_metadata() -> None:
    with anyio.fail_after(10):
        async with running_emulator() as handle, httpx2.AsyncClient(base_url=handle.base_url) as client:
            response = await client.get(f"{API}/repos")
            metadata = await client.get("/.well-known/oauth-protected-resource")
    assert error_of(response) == (401, "UNAUTHORIZED")
    expected = f'Bearer resource_metadata="{handle.base_url}/.well-known/oauth-protected-resource"'
    assert response.headers["www-authenticate"] == expected
    assert metadata.json()["scopes_supported"] == ["read", "write"]


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_unknown_token_is_401_in_both_flavours(flavor: Flavor) -> None:
    with anyio.fail_after(10):
        async with running_emulator(EmulatorConfig(flavor=flavor)) as handle:
            headers = {"Authorization": "Bearer mog_Revoked0000000000000000000"}
            async with httpx2.AsyncClient(base_url=handle.base_url, headers=headers) as client:
                response = await client.get(f"{API}/runs/{MISSING_UUID}")
    assert error_of(response) == (401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"].startswith("Bearer resource_metadata=")


async def test_observed_missing_token_redirects_to_login_instead_of_json() -> None:
    with anyio.fail_after(10):
        observed = EmulatorConfig(flavor="observed")
        async with running_emulator(observed) as handle, httpx2.AsyncClient(base_url=handle.base_url) as client:
            response = await client.get(f"{API}/runs/{MISSING_UUID}/events", params={"limit": "5"})
            followed = await client.get(response.headers["location"])
    assert response.status_code == 307
    location = response.headers["location"]
    assert location.startswith(f"{handle.base_url}/login?next=")
    assert "%2Fapi%2Fv1%2Fmogplex%2Fruns%2F" in location and "limit%3D5" in location
    assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_read_only_token_cannot_start_or_cancel(flavor: Flavor) -> None:
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor)) as api:
            run_id = await api.start_id()
            readonly = {"Authorization": f"Bearer {api.handle.read_only_token}"}
            start = await api.start(token=api.handle.read_only_token)
            cancel = await api.client.post(f"{API}/runs/{run_id}/cancel", headers=readonly)
            read = await api.client.get(f"{API}/runs/{run_id}", headers=readonly)
    assert error_of(start) == (403, "FORBIDDEN") and error_of(cancel) == (403, "FORBIDDEN")
    assert start.json()["error"]["message"].startswith("Missing required scope: write")
    assert read.status_code == 200


async def test_documented_checks_read_scope_and_observed_does_not() -> None:
    write_only = {"mog_WriteOnly00000000000000000": frozenset({"write"})}
    headers = {"Authorization": "Bearer mog_WriteOnly00000000000000000"}
    answers = {}
    flavors: tuple[Flavor, ...] = ("documented", "observed")
    with anyio.fail_after(10):
        for flavor in flavors:
            config = EmulatorConfig(flavor=flavor, tokens=write_only)
            async with running_emulator(config) as handle, httpx2.AsyncClient(base_url=handle.base_url) as client:
                answers[flavor] = await client.get(f"{API}/repos", headers=headers)
    assert error_of(answers["documented"]) == (403, "FORBIDDEN")
    assert answers["observed"].status_code == 200


async def test_observed_www_host_gets_308_to_the_apex_with_path_and_query() -> None:
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor="observed")) as api:
            host = api.handle.base_url.removeprefix("http://")
            response = await api.client.get(f"{API}/repos", params={"q": "web"}, headers={"Host": f"www.{host}"})
            count = api.handle.emulator.request_count(path_prefix=f"{API}/repos")
    assert response.status_code == 308
    assert response.headers["location"] == f"http://{host}{API}/repos?q=web"
    assert count == 1


async def test_documented_www_host_is_served_like_the_docs_show() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            host = api.handle.base_url.removeprefix("http://")
            response = await api.client.get(f"{API}/repos", headers={"Host": f"www.{host}"})
    assert response.status_code == 200


async def test_non_uuid_run_id_is_platform_500_observed_and_404_documented() -> None:
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor="observed")) as api:
            observed = await api.client.get(f"{API}/runs/not-a-uuid/events")
        async with served() as api:
            documented = await api.client.get(f"{API}/runs/not-a-uuid")
    assert observed.status_code == 500
    assert observed.headers["content-type"].startswith("text/plain")
    assert "FUNCTION_INVOCATION_FAILED" in observed.text
    assert error_of(documented) == (404, "NOT_FOUND")


async def test_unknown_api_path_is_a_404_envelope() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            response = await api.client.get(f"{API}/nothing-here")
    assert error_of(response) == (404, "NOT_FOUND")
