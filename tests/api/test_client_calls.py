"""MogplexClient's calls against documented and observed payloads: what is sent, and what comes back."""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest

from mogplex_mcp import __version__
from mogplex_mcp.api import (
    InvalidRequestError,
    MissingTokenError,
    MogplexClient,
    StartRunRequest,
    make_http_client,
)
from mogplex_mcp.config import Settings
from tests.api.support import (
    BASE_URL,
    REPO_ID,
    RUN_ID,
    TOKEN,
    FakeClock,
    Upstream,
    fixture,
    make_client,
    reply_fixture,
    reply_json,
)

pytestmark = pytest.mark.anyio

REQUEST = StartRunRequest(repo_id=REPO_ID, prompt="  Refactor the auth module.  ", create_branch=True)


def run_payload(status: str) -> dict[str, object]:
    run: dict[str, object] = fixture("get_run_200.json")["data"]["run"]
    return {**run, "status": status}


async def test_get_run_unwraps_the_run_wrapper_and_sends_the_documented_request() -> None:
    upstream = Upstream([reply_fixture("get_run_200.json")])
    async with make_client(upstream) as client:
        run = await client.get_run(RUN_ID)
    assert run.run_id == RUN_ID
    assert run.status == "streaming"
    assert run.branch is not None
    assert run.branch.working == "mogplex/run/2026-05-17/refactor-auth"
    [request] = upstream.requests
    assert request.method == "GET"
    assert str(request.url) == f"{BASE_URL}/api/v1/mogplex/runs/{RUN_ID}"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"mogplex-mcp/{__version__}"
    assert request.headers["accept"] == "application/json"


async def test_start_run_reads_the_bare_run_and_sends_a_fresh_uuid4_key() -> None:
    upstream = Upstream([reply_fixture("start_run_202.json", 202)])
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST)
    assert started.run.run_id == RUN_ID
    assert started.run.status == "pending"
    assert started.replayed is False
    [request] = upstream.requests
    assert request.method == "POST"
    assert request.url.path == "/api/v1/mogplex/runs"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == started.idempotency_key
    assert uuid.UUID(started.idempotency_key).version == 4
    assert json.loads(request.content) == {
        "repoId": REPO_ID,
        "prompt": "Refactor the auth module.",
        "createBranch": True,
    }


async def test_start_run_reports_a_replay_and_keeps_the_callers_key() -> None:
    upstream = Upstream([reply_fixture("start_run_202_replayed.json", 202)])
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST, idempotency_key="  my-key-42  ")
    assert started.replayed is True
    assert started.run.status == "streaming"
    assert started.idempotency_key == "my-key-42"
    assert upstream.requests[0].headers["idempotency-key"] == "my-key-42"


async def test_each_logical_start_gets_its_own_key() -> None:
    upstream = Upstream(default=reply_fixture("start_run_202.json", 202))
    async with make_client(upstream) as client:
        first = await client.start_run(REQUEST)
        second = await client.start_run(REQUEST)
    assert first.idempotency_key != second.idempotency_key
    assert [r.headers["idempotency-key"] for r in upstream.requests] == [
        first.idempotency_key,
        second.idempotency_key,
    ]


async def test_start_run_also_accepts_a_run_wrapped_like_get() -> None:
    upstream = Upstream([reply_json(202, {"ok": True, "data": {"run": run_payload("pending"), "replayed": True}})])
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST)
    assert (started.run.run_id, started.run.status, started.replayed) == (RUN_ID, "pending", True)


@pytest.mark.parametrize("key", ["", "   ", "x" * 201, "clé-non-ascii", "line\nbreak"])
async def test_a_bad_caller_key_is_refused_before_sending(key: str) -> None:
    upstream = Upstream()
    async with make_client(upstream) as client:
        with pytest.raises(InvalidRequestError, match="idempotency_key"):
            await client.start_run(REQUEST, idempotency_key=key)
    assert client.request_count == 0
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("name", "outcome", "status", "terminal"),
    [
        ("cancel_documented_200.json", "cancellation_requested", "streaming", False),
        ("cancel_documented_already_terminal_200.json", "already_terminal", "success", True),
        ("cancel_observed_200.json", "cancellation_requested", "cancelled", True),
        ("cancel_observed_already_terminal_200.json", "already_terminal", "success", True),
    ],
)
async def test_cancel_normalizes_both_shapes(name: str, outcome: str, status: str, terminal: bool) -> None:
    upstream = Upstream([reply_fixture(name)])
    async with make_client(upstream) as client:
        result = await client.cancel_run(RUN_ID)
    assert result.outcome == outcome
    assert result.run.status == status
    assert result.run.terminal is terminal
    [request] = upstream.requests
    assert (request.method, request.url.path) == ("POST", f"/api/v1/mogplex/runs/{RUN_ID}/cancel")
    assert request.content == b""


async def test_documented_events_parse_in_order() -> None:
    upstream = Upstream([reply_fixture("events_documented_200.json")])
    async with make_client(upstream) as client:
        page = await client.list_events(RUN_ID, limit=50)
    assert [event.type for event in page.events] == ["stream_started", "tool_call"]
    assert page.events[1].tool_name == "edit_file"
    assert page.events[1].payload == {"path": "src/auth.ts"}
    assert upstream.requests[0].url.path == f"/api/v1/mogplex/runs/{RUN_ID}/events"
    assert upstream.requests[0].url.params["limit"] == "50"


async def test_observed_events_pass_unknown_types_and_bad_dates_through() -> None:
    upstream = Upstream([reply_fixture("events_observed_200.json")])
    async with make_client(upstream) as client:
        page = await client.list_events(RUN_ID)
    assert "limit" not in upstream.requests[0].url.params  # the service's default applies
    assert page.run.terminal is True
    assert len(page.events) == 7
    future = page.events[-1]
    assert (future.type, future.payload, future.created_at) == ("some_future_type", {}, None)
    delivery = page.events[4]
    assert delivery.payload["pull_request_url"] == "https://github.com/acme/web/pull/42"


@pytest.mark.parametrize("status", ["awaiting_input", "brand_new_status"])
async def test_unknown_and_newer_statuses_pass_through_as_active(status: str) -> None:
    upstream = Upstream([reply_json(200, {"ok": True, "data": {"run": run_payload(status)}})])
    async with make_client(upstream) as client:
        run = await client.get_run(RUN_ID)
    assert run.status == status
    assert run.terminal is False


async def test_list_repos_sends_filters_and_reads_snake_case() -> None:
    upstream = Upstream([reply_fixture("repos_200.json")])
    async with make_client(upstream) as client:
        repos = await client.list_repos(query="  acme ", repo_id=REPO_ID, limit=5)
    assert [repo.full_name for repo in repos] == ["acme/api", "acme/web"]
    assert repos[1].root_directory == "apps/web"
    assert repos[0].default_branch == "main"
    params = upstream.requests[0].url.params
    assert (params["q"], params["id"], params["limit"]) == ("acme", REPO_ID, "5")


async def test_list_repos_without_filters_sends_no_query() -> None:
    upstream = Upstream([reply_fixture("repos_200.json")])
    async with make_client(upstream) as client:
        await client.list_repos(query="   ")
    assert upstream.requests[0].url.query == b""


@pytest.mark.parametrize("limit", [0, -1, 201, 10_000])
async def test_limits_outside_the_api_range_are_refused_before_sending(limit: int) -> None:
    upstream = Upstream()
    async with make_client(upstream) as client:
        with pytest.raises(InvalidRequestError, match="1 to 200"):
            await client.list_events(RUN_ID, limit=limit)
        with pytest.raises(InvalidRequestError, match="1 to 200"):
            await client.list_repos(limit=limit)
    assert upstream.requests == []


async def test_a_repo_filter_that_is_not_a_uuid_is_refused() -> None:
    upstream = Upstream()
    async with make_client(upstream) as client:
        with pytest.raises(InvalidRequestError, match="repo_id must be a UUID"):
            await client.list_repos(repo_id="acme/api")
    assert upstream.requests == []


@pytest.mark.parametrize(
    "run_id",
    [
        "../repos",
        "a/cancel",
        "%2e%2e",
        f"{RUN_ID}/cancel",
        f"{RUN_ID}\n",
        f" {RUN_ID}",
        "5b0c2a8e-3f1d-4c47-9a51-2f6e8d7c1a9０",  # a fullwidth digit that looks like 0
        "5b0c2a8e3f1d4c479a512f6e8d7c1a90",
        "",
    ],
)
async def test_run_ids_that_are_not_uuids_never_reach_the_network(run_id: str) -> None:
    upstream = Upstream()
    async with make_client(upstream) as client:
        for call in (client.get_run(run_id), client.list_events(run_id), client.cancel_run(run_id)):
            with pytest.raises(InvalidRequestError, match="runId must be a UUID"):
                await call
    assert client.request_count == 0


@pytest.mark.parametrize("token", [None, ""])
async def test_no_token_fails_before_sending_and_says_how_to_set_it(token: str | None) -> None:
    upstream = Upstream()
    async with make_client(upstream, token=token) as client:
        with pytest.raises(MissingTokenError, match="MOGPLEX_TOKEN"):
            await client.get_run(RUN_ID)
    assert upstream.requests == []


async def test_a_pasted_bearer_prefix_is_not_sent_twice() -> None:
    upstream = Upstream([reply_fixture("get_run_200.json")])
    async with make_client(upstream, token=f"  Bearer {TOKEN} ") as client:
        await client.get_run(RUN_ID)
    assert upstream.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_token_with_inner_spaces_is_refused_before_sending() -> None:
    upstream = Upstream()
    async with make_client(upstream, token="mog_abc def") as client:
        with pytest.raises(MissingTokenError, match="unusable"):
            await client.get_run(RUN_ID)
    assert upstream.requests == []


async def test_request_count_counts_every_request_sent() -> None:
    upstream = Upstream(default=reply_fixture("get_run_200.json"))
    async with make_client(upstream) as client:
        for _ in range(3):
            await client.get_run(RUN_ID)
        assert client.request_count == 3


async def test_from_settings_uses_the_settings_token_url_and_timeouts() -> None:
    upstream = Upstream(default=reply_fixture("get_run_200.json"))
    settings = Settings(token=TOKEN, base_url="http://127.0.0.1:8765", connect_timeout=2.0, read_timeout=9.0)
    async with MogplexClient.from_settings(settings, transport=upstream.transport) as client:
        await client.get_run(RUN_ID)
    [request] = upstream.requests
    assert str(request.url).startswith("http://127.0.0.1:8765/api/v1/mogplex/runs/")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    timeout = request.extensions["timeout"]
    assert timeout["connect"] == 2.0
    assert timeout["read"] == 9.0


async def test_from_settings_lets_a_per_request_token_win() -> None:
    upstream = Upstream(default=reply_fixture("get_run_200.json"))
    settings = Settings(token=TOKEN)
    async with MogplexClient.from_settings(settings, token="mog_OtherUser123", transport=upstream.transport) as c:
        await c.get_run(RUN_ID)
    assert upstream.requests[0].headers["authorization"] == "Bearer mog_OtherUser123"


async def test_a_shared_pool_serves_many_tokens_and_outlives_its_clients() -> None:
    upstream = Upstream(default=reply_fixture("get_run_200.json"))
    settings = Settings(token=None)
    async with make_http_client(settings, transport=upstream.transport) as pool:
        assert "authorization" not in pool.headers
        assert pool.follow_redirects is False
        for token in ("mog_UserOne1", "mog_UserTwo2"):
            async with MogplexClient.from_settings(settings, token=token, http=pool) as client:
                await client.get_run(RUN_ID)
        assert not pool.is_closed
    assert [r.headers["authorization"] for r in upstream.requests] == [
        "Bearer mog_UserOne1",
        "Bearer mog_UserTwo2",
    ]


async def test_a_pasted_full_api_url_as_base_url_still_works() -> None:
    upstream = Upstream([reply_fixture("get_run_200.json")])
    async with make_client(upstream, base_url="https://mogplex.com/api/v1/mogplex/") as client:
        await client.get_run(RUN_ID)
    assert upstream.paths == [f"/api/v1/mogplex/runs/{RUN_ID}"]


def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        MogplexClient(base_url="mogplex.com", token=TOKEN)


async def test_the_clock_is_only_read_not_slept_on_success() -> None:
    clock = FakeClock()
    upstream = Upstream([reply_fixture("get_run_200.json")], clock=clock)
    async with make_client(upstream) as client:
        await client.get_run(RUN_ID)
    assert clock.sleeps == []


async def test_transport_and_shared_pool_together_is_a_programming_error() -> None:
    async with httpx2.AsyncClient() as pool:
        with pytest.raises(ValueError, match="either"):
            MogplexClient(base_url=BASE_URL, token=TOKEN, http=pool, transport=Upstream().transport)
