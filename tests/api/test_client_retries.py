"""The client's request loop under failure: retries, backoff, Retry-After, budget and deadline (fake clock)."""

from __future__ import annotations

import httpx2
import pytest

from mogplex_mcp.api import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IdempotencyConflictError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    StartRunRequest,
    UpstreamConnectError,
    UpstreamTimeoutError,
)
from tests.api.support import (
    REPO_ID,
    RUN_ID,
    FakeClock,
    Reply,
    Upstream,
    fixture,
    make_client,
    reply_error,
    reply_fixture,
    reply_html_502,
    reply_json,
)

pytestmark = pytest.mark.anyio

GET_RUN = reply_fixture("get_run_200.json")
REQUEST = StartRunRequest(repo_id=REPO_ID, prompt="Fix the flaky test")


@pytest.mark.parametrize(
    "failure",
    [
        reply_error("INTERNAL_ERROR"),
        reply_error("SERVICE_UNAVAILABLE"),
        reply_html_502(),
        reply_json(408, {"ok": False, "error": {"code": "TIMEOUT", "message": "slow"}}),
        httpx2.ConnectError("connection refused"),
        httpx2.ReadTimeout("timed out"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_transient_failures_are_retried_until_success(failure: Reply) -> None:
    clock = FakeClock()
    upstream = Upstream([failure, failure, GET_RUN], clock=clock)
    async with make_client(upstream) as client:
        run = await client.get_run(RUN_ID)
    assert run.run_id == RUN_ID
    assert client.request_count == 3
    assert len(clock.sleeps) == 2


async def test_backoff_is_jittered_and_doubles() -> None:
    for seed in range(20):
        clock = FakeClock()
        upstream = Upstream([reply_error("INTERNAL_ERROR")] * 2 + [GET_RUN], clock=clock)
        async with make_client(upstream, seed=seed) as client:
            await client.get_run(RUN_ID)
        first, second = clock.sleeps
        assert 0.375 <= first <= 0.5
        assert 0.75 <= second <= 1.0


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    clock = FakeClock()
    upstream = Upstream(default=reply_error("SERVICE_UNAVAILABLE"), clock=clock)
    async with make_client(upstream) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.get_run(RUN_ID)
    assert client.request_count == 3  # the first attempt and max_retries=2 more
    assert caught.value.status == 503
    assert "Limit check backend unavailable" in str(caught.value)


async def test_retry_after_within_the_cap_is_waited_out_exactly() -> None:
    clock = FakeClock()
    upstream = Upstream([reply_error("RATE_LIMITED", {"Retry-After": "3"}), GET_RUN], clock=clock)
    async with make_client(upstream) as client:
        await client.get_run(RUN_ID)
    assert clock.sleeps == [3.0]


async def test_retry_after_beyond_the_cap_stops_at_once_and_reports_the_delay() -> None:
    clock = FakeClock()
    upstream = Upstream(default=reply_error("RATE_LIMITED", {"Retry-After": "60"}), clock=clock)
    async with make_client(upstream) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get_run(RUN_ID)
    assert caught.value.retry_after == 60.0
    assert "retry after 60 s" in str(caught.value)
    assert client.request_count == 1
    assert clock.sleeps == []


async def test_retry_after_on_503_is_carried_too() -> None:
    clock = FakeClock()
    upstream = Upstream(default=reply_error("SERVICE_UNAVAILABLE", {"Retry-After": "60"}), clock=clock)
    async with make_client(upstream) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.list_repos()
    assert caught.value.retry_after == 60.0
    assert client.request_count == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("BAD_REQUEST", BadRequestError),
        ("UNAUTHORIZED", AuthenticationError),
        ("NOT_FOUND", NotFoundError),
        ("CONFLICT", ConflictError),
        ("IDEMPOTENCY_CONFLICT", IdempotencyConflictError),
    ],
)
async def test_client_errors_are_never_retried(code: str, error: type[Exception]) -> None:
    clock = FakeClock()
    upstream = Upstream(default=reply_error(code), clock=clock)
    async with make_client(upstream) as client:
        with pytest.raises(error):
            await client.start_run(REQUEST)
    assert client.request_count == 1
    assert clock.sleeps == []


async def test_the_budget_bounds_the_whole_call_and_no_sleep_overruns_it() -> None:
    clock = FakeClock()
    start = clock.now
    policy = RetryPolicy(max_retries=50, base_delay=1.0, max_delay=4.0, budget_seconds=10.0)
    upstream = Upstream(default=reply_error("INTERNAL_ERROR"), clock=clock, latency=0.5)
    async with make_client(upstream, retry=policy) as client:
        with pytest.raises(ServerError):
            await client.get_run(RUN_ID)
    assert len(clock.sleeps) >= 2  # it did retry...
    for began, slept in zip(clock.sleep_started, clock.sleeps, strict=True):
        assert began + slept < start + 10.0  # ...but never slept past the budget
    assert clock.now - start <= 10.0 + upstream.latency


async def test_each_attempts_timeout_is_cut_to_what_is_left() -> None:
    clock = FakeClock()
    policy = RetryPolicy(budget_seconds=20.0)
    upstream = Upstream([reply_error("INTERNAL_ERROR"), GET_RUN], clock=clock, latency=4.0)
    async with make_client(upstream, retry=policy) as client:
        await client.get_run(RUN_ID, deadline=clock.now + 6.0)
    first, second = (request.extensions["timeout"] for request in upstream.requests)
    assert first["read"] == pytest.approx(6.0)
    assert first["connect"] == pytest.approx(5.0)  # the pool's own connect timeout is already shorter
    assert second["read"] == pytest.approx(6.0 - 4.0 - clock.sleeps[0])
    assert second["connect"] == pytest.approx(second["read"])


async def test_a_deadline_already_past_sends_nothing_and_says_so() -> None:
    clock = FakeClock()
    upstream = Upstream(default=GET_RUN, clock=clock)
    async with make_client(upstream) as client:
        with pytest.raises(UpstreamTimeoutError, match="deadline"):
            await client.get_run(RUN_ID, deadline=clock.now - 1.0)
    assert client.request_count == 0


async def test_no_retry_sleep_runs_past_the_deadline() -> None:
    clock = FakeClock()
    start = clock.now
    upstream = Upstream(default=reply_error("RATE_LIMITED", {"Retry-After": "4"}), clock=clock, latency=0.1)
    async with make_client(upstream) as client:
        with pytest.raises(RateLimitedError):
            await client.get_run(RUN_ID, deadline=start + 6.0)
    assert clock.sleeps == [4.0]  # a second 4 s wait would have ended after the deadline
    assert client.request_count == 2
    assert clock.now <= start + 6.0


async def test_a_deadline_later_than_the_budget_does_not_extend_it() -> None:
    clock = FakeClock()
    start = clock.now
    policy = RetryPolicy(max_retries=50, base_delay=1.0, max_delay=1.0, budget_seconds=3.0)
    upstream = Upstream(default=reply_error("INTERNAL_ERROR"), clock=clock)
    async with make_client(upstream, retry=policy) as client:
        with pytest.raises(ServerError):
            await client.get_run(RUN_ID, deadline=start + 100.0)
    assert clock.now - start < 3.0


async def test_an_attempt_that_uses_up_the_deadline_ends_as_a_timeout() -> None:
    clock = FakeClock()
    upstream = Upstream(default=httpx2.ReadTimeout("timed out"), clock=clock, latency=5.0)
    async with make_client(upstream) as client:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await client.get_run(RUN_ID, deadline=clock.now + 5.0)
    assert client.request_count == 1
    assert "timed out" in str(caught.value)


async def test_a_start_retried_after_a_dropped_connection_reuses_its_key() -> None:
    """The service may have committed the run before the connection dropped: the retry must replay it."""
    committed: dict[str, str] = {}

    def commit_then_drop(request: httpx2.Request) -> httpx2.Response:
        committed[request.headers["idempotency-key"]] = RUN_ID
        raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")

    def replay(request: httpx2.Request) -> httpx2.Response:
        assert request.headers["idempotency-key"] in committed
        return httpx2.Response(202, json=fixture("start_run_202_replayed.json"))

    clock = FakeClock()
    upstream = Upstream([commit_then_drop, replay], clock=clock)
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST)
    keys = [request.headers["idempotency-key"] for request in upstream.requests]
    assert keys == [started.idempotency_key] * 2
    assert started.replayed is True
    assert started.run.run_id == RUN_ID
    assert started.attempts == 2 and started.recovered, "the replay answered this call's own retry"


async def test_a_replay_on_the_first_attempt_is_the_callers_repeat_not_a_recovery() -> None:
    upstream = Upstream([reply_fixture("start_run_202_replayed.json", 202)], clock=FakeClock())
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST, idempotency_key="used-before")
    assert started.replayed is True and started.attempts == 1 and not started.recovered


async def test_a_start_retried_after_server_errors_keeps_the_callers_key() -> None:
    clock = FakeClock()
    upstream = Upstream(
        [reply_error("INTERNAL_ERROR"), reply_html_502(), reply_fixture("start_run_202.json", 202)], clock=clock
    )
    async with make_client(upstream) as client:
        started = await client.start_run(REQUEST, idempotency_key="tool-call-1234")
    assert [r.headers["idempotency-key"] for r in upstream.requests] == ["tool-call-1234"] * 3
    assert started.idempotency_key == "tool-call-1234"
    assert started.attempts == 3 and not started.recovered, "a fresh run after retries is no replay"


async def test_a_policy_without_retries_makes_one_attempt() -> None:
    clock = FakeClock()
    upstream = Upstream(default=httpx2.ConnectError("refused"), clock=clock)
    async with make_client(upstream, retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(UpstreamConnectError, match="could not connect"):
            await client.get_run(RUN_ID)
    assert client.request_count == 1
    assert clock.sleeps == []
