"""The api package's front door: what other packages may import from `mogplex_mcp.api`, pinned."""

from __future__ import annotations

import mogplex_mcp.api as api

EXPECTED = {
    "API_PREFIX",
    "TERMINAL_STATUSES",
    "USER_AGENT",
    "ApiStatusError",
    "AuthenticationError",
    "BadRequestError",
    "CancelResult",
    "ConflictError",
    "EventPage",
    "GateLimits",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "MissingTokenError",
    "MogplexClient",
    "MogplexError",
    "NotFoundError",
    "OversizedResponseError",
    "PermissionDeniedError",
    "RateLimitedError",
    "Repo",
    "RetryPolicy",
    "RunDetail",
    "RunEvent",
    "ServerError",
    "ServiceUnavailableError",
    "StartRunRequest",
    "StartedRun",
    "StreamBudgetExhaustedError",
    "TransportError",
    "UnexpectedResponseError",
    "UpstreamConnectError",
    "UpstreamGate",
    "UpstreamTimeoutError",
    "is_terminal",
    "is_uuid",
    "make_http_client",
    "token_fingerprint",
}


def test_all_is_exactly_the_pinned_public_names() -> None:
    assert set(api.__all__) == EXPECTED
    assert len(api.__all__) == len(EXPECTED)


def test_every_public_name_resolves() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def test_every_error_is_a_mogplex_error() -> None:
    errors = [getattr(api, name) for name in api.__all__ if name.endswith("Error")]
    assert errors
    assert all(issubclass(error, api.MogplexError) for error in errors)


def test_the_user_agent_names_the_package_and_version() -> None:
    from mogplex_mcp import __version__

    assert f"mogplex-mcp/{__version__}" == api.USER_AGENT
