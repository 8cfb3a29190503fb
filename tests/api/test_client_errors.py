"""Every way an answer can go wrong becomes a typed error with a clear message — never a parse traceback."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from mogplex_mcp.api import (
    ApiStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IdempotencyConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    UnexpectedResponseError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)
from mogplex_mcp.api.client import MogplexClient
from tests.api.support import (
    RUN_ID,
    TOKEN,
    Reply,
    Upstream,
    error_envelopes,
    fixture,
    make_client,
    reply_fixture,
    reply_html_502,
    reply_json,
    reply_raw,
    reply_redirect,
)

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy(max_retries=0)

EXPECTED_CLASS: dict[str, type[ApiStatusError]] = {
    "UNAUTHORIZED": AuthenticationError,
    "FORBIDDEN": PermissionDeniedError,
    "AUTOMATION_REQUIRED": PermissionDeniedError,
    "BAD_REQUEST": BadRequestError,
    "NOT_FOUND": NotFoundError,
    "CONFLICT": ConflictError,
    "IDEMPOTENCY_CONFLICT": IdempotencyConflictError,
    "RATE_LIMITED": RateLimitedError,
    "SERVICE_UNAVAILABLE": ServiceUnavailableError,
    "INTERNAL_ERROR": ServerError,
}


def no_retry_client(upstream: Upstream, **kw: Any) -> MogplexClient:
    return make_client(upstream, retry=NO_RETRY, **kw)


def test_every_fixture_code_has_an_expected_class() -> None:
    assert set(error_envelopes()) == set(EXPECTED_CLASS)


@pytest.mark.parametrize("code", sorted(EXPECTED_CLASS))
async def test_each_error_code_becomes_its_class_with_status_code_and_message(code: str) -> None:
    entry = error_envelopes()[code]
    upstream = Upstream([reply_json(entry["status"], entry["body"])])
    async with no_retry_client(upstream) as client:
        with pytest.raises(ApiStatusError) as caught:
            await client.get_run(RUN_ID)
    error = caught.value
    assert type(error) is EXPECTED_CLASS[code]
    assert (error.status, error.code) == (entry["status"], code)
    assert entry["body"]["error"]["message"] in str(error)
    assert str(entry["status"]) in str(error)


async def test_an_unknown_code_falls_back_to_its_status() -> None:
    body = {"ok": False, "error": {"code": "QUOTA_MELTED", "message": "Too much"}}
    upstream = Upstream([reply_json(404, body)])
    async with no_retry_client(upstream) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_run(RUN_ID)
    assert caught.value.code == "QUOTA_MELTED"
    assert "Too much" in str(caught.value)


async def test_an_html_502_from_a_proxy_is_a_server_error_that_says_so() -> None:
    upstream = Upstream([reply_html_502()])
    async with no_retry_client(upstream) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_run(RUN_ID)
    assert caught.value.status == 502
    assert "non-JSON" in str(caught.value)
    assert "<html>" not in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (reply_raw(200, b"<html>Welcome to Mogplex</html>", "text/html"), "not JSON"),
        (reply_raw(200, b'{"ok": true, "data": {"run": ', "application/json"), "not JSON"),
        (reply_raw(200, b"\xff\xfe\x00garbage", "application/json"), "not JSON"),
        (reply_json(200, {"run": {"runId": RUN_ID}}), "not a Mogplex API envelope"),
        (reply_json(200, [1, 2, 3]), "not a Mogplex API envelope"),
        (reply_json(200, {"ok": True}), "not a Mogplex API envelope"),
    ],
)
async def test_unreadable_successes_are_unexpected_responses(reply: Reply, expected: str) -> None:
    upstream = Upstream([reply])
    async with no_retry_client(upstream) as client:
        with pytest.raises(UnexpectedResponseError, match=expected) as caught:
            await client.get_run(RUN_ID)
    assert caught.value.status == 200
    assert "MOGPLEX_BASE_URL" in str(caught.value)


async def test_a_500_that_is_the_platforms_own_json_is_a_server_error() -> None:
    upstream = Upstream([reply_json(500, {"message": "Internal Server Error"})])
    async with no_retry_client(upstream) as client:
        with pytest.raises(ServerError, match="HTTP 500"):
            await client.get_run(RUN_ID)


async def test_an_ok_false_envelope_on_a_200_is_still_an_error() -> None:
    body = {"ok": False, "error": {"code": "NOT_FOUND", "message": "Run not found"}}
    upstream = Upstream([reply_json(200, body)])
    async with no_retry_client(upstream) as client:
        with pytest.raises(NotFoundError, match="Run not found"):
            await client.get_run(RUN_ID)


@pytest.mark.parametrize(
    ("call", "data", "field"),
    [
        ("get_run", {"run": {"status": "pending"}}, "runId"),
        ("list_events", {"run": fixture("get_run_200.json")["data"]["run"], "events": "nope"}, "events"),
        ("list_repos", {"repos": [{"full_name": "acme/api"}]}, "repos.0.id"),
        ("cancel_run", {"status": "cancelled"}, "run"),
    ],
)
async def test_a_success_whose_data_does_not_fit_names_the_field(call: str, data: Any, field: str) -> None:
    upstream = Upstream([reply_json(200, {"ok": True, "data": data})])
    async with no_retry_client(upstream) as client:
        pending = client.list_repos() if call == "list_repos" else getattr(client, call)(RUN_ID)
        with pytest.raises(UnexpectedResponseError) as caught:
            await pending
    assert field in str(caught.value)
    assert "expected shape" in str(caught.value)


@pytest.mark.parametrize(
    ("failure", "error", "words"),
    [
        (httpx2.ConnectError("[Errno 111] Connection refused"), UpstreamConnectError, "could not connect"),
        (httpx2.ConnectTimeout("timed out"), UpstreamTimeoutError, "timed out connecting"),
        (httpx2.ReadTimeout("timed out"), UpstreamTimeoutError, "timed out waiting for the answer"),
        (httpx2.RemoteProtocolError("Server disconnected"), UpstreamConnectError, "connection failed"),
        (httpx2.ReadError("reset by peer"), UpstreamConnectError, "connection failed"),
    ],
)
async def test_transport_failures_map_onto_our_tree(failure: Exception, error: type[Exception], words: str) -> None:
    upstream = Upstream([failure])
    async with no_retry_client(upstream) as client:
        with pytest.raises(error, match=words) as caught:
            await client.get_run(RUN_ID)
    assert f"GET /runs/{RUN_ID}" in str(caught.value)
    assert caught.value.__cause__ is None


async def test_www_is_followed_to_the_apex_once_and_remembered() -> None:
    upstream = Upstream(
        [
            reply_redirect(308, f"https://mogplex.com/api/v1/mogplex/runs/{RUN_ID}"),
            reply_fixture("get_run_200.json"),
        ],
        default=reply_fixture("get_run_200.json"),
    )
    async with no_retry_client(upstream, base_url="https://www.mogplex.com") as client:
        run = await client.get_run(RUN_ID)
        await client.get_run(RUN_ID)
    assert run.run_id == RUN_ID
    hosts = [request.url.host for request in upstream.requests]
    assert hosts == ["www.mogplex.com", "mogplex.com", "mogplex.com"]
    assert all(request.headers["authorization"] == f"Bearer {TOKEN}" for request in upstream.requests)
    assert client.base_url == "https://mogplex.com"


async def test_a_start_redirected_to_the_apex_resends_the_same_body_and_key() -> None:
    from mogplex_mcp.api import StartRunRequest

    upstream = Upstream(
        [
            reply_redirect(308, "https://mogplex.com/api/v1/mogplex/runs"),
            reply_fixture("start_run_202.json", 202),
        ]
    )
    request = StartRunRequest(repo_id="8f3a2b1c-1234-4abc-9def-1234567890ab", prompt="go")
    async with no_retry_client(upstream, base_url="https://www.mogplex.com") as client:
        started = await client.start_run(request)
    first, second = upstream.requests
    assert second.method == "POST"
    assert first.content == second.content
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == started.idempotency_key


async def test_the_apex_is_remembered_by_other_clients_on_the_same_pool() -> None:
    upstream = Upstream(
        [reply_redirect(308, f"https://mogplex.com/api/v1/mogplex/runs/{RUN_ID}")],
        default=reply_fixture("get_run_200.json"),
    )
    async with httpx2.AsyncClient(transport=upstream.transport) as pool:
        for _ in range(2):
            client = MogplexClient(base_url="https://www.mogplex.com", token=TOKEN, http=pool)
            await client.get_run(RUN_ID)
    assert [request.url.host for request in upstream.requests] == ["www.mogplex.com", "mogplex.com", "mogplex.com"]


async def test_a_second_www_redirect_is_not_followed() -> None:
    apex = f"https://mogplex.com/api/v1/mogplex/runs/{RUN_ID}"
    upstream = Upstream([reply_redirect(308, apex), reply_redirect(308, apex)])
    async with no_retry_client(upstream, base_url="https://www.mogplex.com") as client:
        with pytest.raises(UnexpectedResponseError, match="unexpected redirect"):
            await client.get_run(RUN_ID)
    assert client.request_count == 2


@pytest.mark.parametrize(
    "location",
    [
        f"http://mogplex.com/api/v1/mogplex/runs/{RUN_ID}",  # scheme downgrade
        f"https://evil.example/api/v1/mogplex/runs/{RUN_ID}",  # another host
        "https://mogplex.com/somewhere/else",  # another path
    ],
)
async def test_other_redirects_from_www_are_not_followed(location: str) -> None:
    upstream = Upstream([reply_redirect(308, location)])
    async with no_retry_client(upstream, base_url="https://www.mogplex.com") as client:
        with pytest.raises(UnexpectedResponseError, match="MOGPLEX_BASE_URL") as caught:
            await client.get_run(RUN_ID)
    assert client.request_count == 1
    assert caught.value.status == 308


@pytest.mark.parametrize(
    "location",
    [
        f"/login?next=%2Fapi%2Fv1%2Fmogplex%2Fruns%2F{RUN_ID}",
        "https://mogplex.com/login",
    ],
)
async def test_a_redirect_to_the_login_page_means_a_missing_or_invalid_token(location: str) -> None:
    upstream = Upstream([reply_redirect(307, location)])
    async with make_client(upstream) as client:
        with pytest.raises(AuthenticationError, match="missing or invalid") as caught:
            await client.get_run(RUN_ID)
    assert caught.value.status == 307
    assert "MOGPLEX_TOKEN" in str(caught.value)
    assert client.request_count == 1  # not retried, not followed


async def test_www_then_login_is_an_authentication_error() -> None:
    upstream = Upstream(
        [
            reply_redirect(308, f"https://mogplex.com/api/v1/mogplex/runs/{RUN_ID}"),
            reply_redirect(307, "/login?next=%2Fapi"),
        ]
    )
    async with make_client(upstream, base_url="https://www.mogplex.com") as client:
        with pytest.raises(AuthenticationError):
            await client.get_run(RUN_ID)
    assert client.request_count == 2
