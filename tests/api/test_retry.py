"""The retry policy's pure functions: what is retried, how long we wait, and when we give up."""

from __future__ import annotations

import random

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mogplex_mcp.api.errors import (
    ApiStatusError,
    BadRequestError,
    ConflictError,
    IdempotencyConflictError,
    InvalidRequestError,
    MissingTokenError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    UpstreamConnectError,
    UpstreamTimeoutError,
    error_from_response,
    error_from_transport,
)
from mogplex_mcp.api.retry import RetryPolicy, backoff_delay, is_retryable, next_delay
from mogplex_mcp.config import Settings
from tests.api.support import error_envelopes

POLICY = RetryPolicy()


def status_error(status: int, code: str | None = None, retry_after: float | None = None) -> ApiStatusError:
    body = {"ok": False, "error": {"code": code, "message": "x"}} if code else None
    header = None if retry_after is None else str(retry_after)
    return error_from_response(status, body, retry_after=header)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("UNAUTHORIZED", False),
        ("FORBIDDEN", False),
        ("AUTOMATION_REQUIRED", False),
        ("BAD_REQUEST", False),
        ("NOT_FOUND", False),
        ("CONFLICT", False),
        ("IDEMPOTENCY_CONFLICT", False),
        ("RATE_LIMITED", True),
        ("SERVICE_UNAVAILABLE", True),
        ("INTERNAL_ERROR", True),
    ],
)
def test_each_api_error_code_is_retried_or_not(code: str, retryable: bool) -> None:
    entry = error_envelopes()[code]
    assert is_retryable(error_from_response(entry["status"], entry["body"])) is retryable


@pytest.mark.parametrize(("status", "retryable"), [(408, True), (502, True), (504, True), (422, False)])
def test_statuses_without_an_envelope(status: int, retryable: bool) -> None:
    assert is_retryable(status_error(status)) is retryable


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_transport_failures_are_retried(exc: httpx2.HTTPError) -> None:
    assert is_retryable(error_from_transport(exc, "GET /runs"))


@pytest.mark.parametrize(
    "exc",
    [
        MissingTokenError("no token"),
        InvalidRequestError("bad id"),
        UnexpectedResponseError("HTML on a 200", status=200),
        ValueError("a bug"),
    ],
)
def test_our_own_refusals_and_bugs_are_not_retried(exc: Exception) -> None:
    assert not is_retryable(exc)


def test_conflicts_are_never_retried_whatever_their_status() -> None:
    assert not is_retryable(IdempotencyConflictError("same key, other body", status=409))
    assert not is_retryable(ConflictError("sandbox unreachable", status=409))


@given(attempt=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_backoff_doubles_with_at_most_a_quarter_of_jitter_and_is_capped(attempt: int, seed: int) -> None:
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
    delay = backoff_delay(attempt, POLICY, random.Random(seed))
    assert 0.75 * ceiling <= delay <= ceiling <= POLICY.max_delay


def test_backoff_grows_0_5_1_2_4_8_then_stays_at_8() -> None:
    class NoJitter(random.Random):
        def random(self) -> float:
            return 0.0

    delays = [backoff_delay(attempt, POLICY, NoJitter()) for attempt in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_retry_after_is_honoured_exactly_when_within_the_cap() -> None:
    exc = status_error(429, "RATE_LIMITED", retry_after=7)
    assert next_delay(exc, 1, POLICY, elapsed=0.0, rng=random.Random(1)) == 7.0


def test_retry_after_beyond_the_cap_gives_up() -> None:
    exc = status_error(429, "RATE_LIMITED", retry_after=60)
    assert next_delay(exc, 1, POLICY, elapsed=0.0, rng=random.Random(1)) is None
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after == 60.0


def test_retries_stop_after_max_retries() -> None:
    exc = status_error(500, "INTERNAL_ERROR")
    rng = random.Random(3)
    assert next_delay(exc, 2, POLICY, elapsed=0.0, rng=rng) is not None
    assert next_delay(exc, 3, POLICY, elapsed=0.0, rng=rng) is None


def test_a_sleep_that_would_overrun_the_budget_is_never_started() -> None:
    exc = status_error(503, "SERVICE_UNAVAILABLE", retry_after=5)
    assert next_delay(exc, 1, POLICY, elapsed=14.0, rng=random.Random(1)) == 5.0
    assert next_delay(exc, 1, POLICY, elapsed=15.0, rng=random.Random(1)) is None


def test_a_sleep_past_the_callers_deadline_is_never_started() -> None:
    exc = status_error(503, "SERVICE_UNAVAILABLE", retry_after=5)
    assert next_delay(exc, 1, POLICY, elapsed=0.0, rng=random.Random(1), remaining=5.5) == 5.0
    assert next_delay(exc, 1, POLICY, elapsed=0.0, rng=random.Random(1), remaining=5.0) is None


def test_a_zero_budget_means_no_retries() -> None:
    policy = RetryPolicy(budget_seconds=0)
    assert next_delay(UpstreamConnectError("down"), 1, policy, elapsed=0.0, rng=random.Random(1)) is None


def test_non_retryable_errors_give_up_at_once() -> None:
    exc = status_error(400, "BAD_REQUEST")
    assert isinstance(exc, BadRequestError)
    assert next_delay(exc, 1, POLICY, elapsed=0.0, rng=random.Random(1)) is None


def test_timeouts_are_retried_with_backoff() -> None:
    delay = next_delay(UpstreamTimeoutError("slow"), 1, POLICY, elapsed=0.0, rng=random.Random(1))
    assert delay is not None
    assert 0.375 <= delay <= 0.5


def test_a_server_error_without_retry_after_uses_backoff() -> None:
    exc = status_error(502)
    assert isinstance(exc, ServerError)
    delay = next_delay(exc, 2, POLICY, elapsed=0.0, rng=random.Random(1))
    assert delay is not None
    assert 0.75 <= delay <= 1.0


def test_policy_from_settings_takes_the_retry_settings() -> None:
    settings = Settings(max_retries=4, retry_budget_seconds=12.0, max_retry_after_seconds=3.0)
    policy = RetryPolicy.from_settings(settings)
    assert (policy.max_retries, policy.budget_seconds, policy.max_retry_after) == (4, 12.0, 3.0)


@pytest.mark.parametrize("bad", [{"max_retries": -1}, {"base_delay": -0.1}, {"budget_seconds": float("nan")}])
def test_nonsense_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="zero or more"):
        RetryPolicy(**bad)  # type: ignore[arg-type]
