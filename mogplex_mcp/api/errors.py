"""The exception tree of the upstream client, and the one place upstream failures are mapped onto it.

    MogplexError
    ├── MissingTokenError           no token configured; nothing was sent
    ├── InvalidRequestError         an argument broke the API's rules; nothing was sent
    ├── TransportError              no HTTP answer at all
    │   ├── UpstreamConnectError    could not connect / connection dropped
    │   └── UpstreamTimeoutError    no answer in time (or the call's deadline ran out)
    └── ApiStatusError              an HTTP answer that is not a success (status, code, retry_after)
        ├── BadRequestError             400 BAD_REQUEST
        ├── AuthenticationError         401, or a redirect to the login page
        ├── PermissionDeniedError       403 FORBIDDEN / AUTOMATION_REQUIRED
        ├── NotFoundError               404
        ├── ConflictError               409 CONFLICT (e.g. sandbox unreachable on cancel)
        │   └── IdempotencyConflictError    409 IDEMPOTENCY_CONFLICT: same key, different body
        ├── RateLimitedError            429
        ├── ServerError                 5xx (envelope or not)
        │   └── ServiceUnavailableError     503 SERVICE_UNAVAILABLE
        └── UnexpectedResponseError     a body we cannot read (HTML, malformed JSON, wrong shape)
            └── OversizedResponseError      a body or stream event past the size cap (not read further)

No message ever contains the token: messages are built from status codes, API codes and the
service's own `message` text, which we scrub of bearer-looking strings anyway.

httpx2's own exceptions are turned into ours in exactly one place, `error_from_transport`; an HTTP
answer that is not a usable success becomes one of ours in `envelope_data`, `redirect_error` and
`shape_error`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
from pydantic import ValidationError

from mogplex_mcp.config import TOKEN_ENV

_LOGIN_SEGMENTS = frozenset({"login", "signin", "sign-in", "sign_in"})

_SECRETISH = re.compile(r"(?i)(bearer\s+)?\b(mog_[A-Za-z0-9]+|gh[pousr]_[A-Za-z0-9]+|github_pat_\w+|sk-[\w-]{8,})")
_MAX_MESSAGE = 500


def scrub(text: str, *secrets: str | None) -> str:
    """Remove token-looking strings (and any given secret) from text that may reach a user."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _SECRETISH.sub("[redacted]", text)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return text


class MogplexError(Exception):
    """Base of everything the client raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MissingTokenError(MogplexError):
    """No personal access token is configured."""


class InvalidRequestError(MogplexError, ValueError):
    """An argument broke the API's rules; the request was never sent."""


class TransportError(MogplexError):
    """The service gave no HTTP answer."""


class UpstreamConnectError(TransportError):
    """The connection could not be made, or dropped before an answer came."""


class UpstreamTimeoutError(TransportError):
    """No answer within the timeout or the call's deadline."""


class ApiStatusError(MogplexError):
    """An HTTP answer that is not a success."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"retry_after={self.retry_after}, message={self.message!r})"
        )


class BadRequestError(ApiStatusError):
    pass


class AuthenticationError(ApiStatusError):
    pass


class PermissionDeniedError(ApiStatusError):
    pass


class NotFoundError(ApiStatusError):
    pass


class ConflictError(ApiStatusError):
    pass


class IdempotencyConflictError(ConflictError):
    pass


class RateLimitedError(ApiStatusError):
    pass


class ServerError(ApiStatusError):
    pass


class ServiceUnavailableError(ServerError):
    pass


class UnexpectedResponseError(ApiStatusError):
    pass


class OversizedResponseError(UnexpectedResponseError):
    """The answer (or one event of a stream) was larger than the cap; reading stopped there."""

    def __init__(self, message: str, *, status: int, limit: int) -> None:
        super().__init__(message, status=status)
        self.limit = limit


_BY_CODE: dict[str, type[ApiStatusError]] = {
    "BAD_REQUEST": BadRequestError,
    "UNAUTHORIZED": AuthenticationError,
    "FORBIDDEN": PermissionDeniedError,
    "AUTOMATION_REQUIRED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "CONFLICT": ConflictError,
    "IDEMPOTENCY_CONFLICT": IdempotencyConflictError,
    "RATE_LIMITED": RateLimitedError,
    "SERVICE_UNAVAILABLE": ServiceUnavailableError,
    "INTERNAL_ERROR": ServerError,
}

_BY_STATUS: dict[int, type[ApiStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_class_for(status: int, code: str | None) -> type[ApiStatusError]:
    """Status and API code → exception class. Known codes win; unknown codes fall back to the status."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ApiStatusError


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; HTTP dates are rare here and ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:
        return None
    return seconds


def error_from_response(
    status: int,
    body: Any,
    *,
    retry_after: str | None = None,
    secret: str | None = None,
) -> ApiStatusError:
    """Build the typed error for a non-success answer. `body` is the parsed JSON, or None when the
    body was not JSON (an HTML error page from a proxy, say)."""
    delay = parse_retry_after(retry_after)
    code: str | None = None
    detail: str | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raw_code = body["error"].get("code")
        raw_message = body["error"].get("message")
        code = raw_code if isinstance(raw_code, str) else None
        detail = raw_message if isinstance(raw_message, str) else None
    cls = error_class_for(status, code)
    text = _status_text(status, code, detail, body)
    if delay is not None:
        text += f" (retry after {delay:g} s)"
    return cls(scrub(text, secret), status=status, code=code, retry_after=delay)


def _status_text(status: int, code: str | None, detail: str | None, body: Any) -> str:
    if detail:
        return f"HTTP {status} {code or ''}: {detail}".replace("  ", " ")
    if body is None:
        return f"HTTP {status} with a non-JSON body (the service or a proxy in front of it failed)"
    return f"HTTP {status}{' ' + code if code else ''} with no error message"


def error_from_transport(exc: httpx2.HTTPError, what: str, *, secret: str | None = None) -> TransportError:
    """The one mapping of httpx2's failures onto ours. `what` names the call, e.g. "GET /runs/{id}"."""
    detail = scrub(str(exc) or type(exc).__name__, secret)
    if isinstance(exc, httpx2.TimeoutException):
        phase = {
            httpx2.ConnectTimeout: "connecting",
            httpx2.PoolTimeout: "waiting for a free connection",
            httpx2.WriteTimeout: "sending the request",
        }.get(type(exc), "waiting for the answer")
        return UpstreamTimeoutError(f"{what}: timed out {phase} ({detail})")
    if isinstance(exc, httpx2.ConnectError):
        return UpstreamConnectError(f"{what}: could not connect to the Mogplex API ({detail})")
    return UpstreamConnectError(
        f"{what}: the connection failed before an answer arrived ({type(exc).__name__}: {detail})"
    )


def envelope_data(response: httpx2.Response, what: str, token: str, content: bytes | None = None) -> Any:
    """The `data` of a success envelope; every other answer becomes a typed error.

    `content` is the body when it was read separately (streamed, with a cap); else the response's own.
    """
    status = response.status_code
    try:
        body: Any = json.loads(response.content if content is None else content)
    except (ValueError, RecursionError):  # malformed JSON, HTML, bytes that are not UTF-8, absurd nesting
        body = None
    ok = isinstance(body, dict) and body.get("ok") is True and "data" in body
    if not 200 <= status < 300 or (isinstance(body, dict) and body.get("ok") is False):
        raise error_from_response(status, body, retry_after=response.headers.get("retry-after"), secret=token)
    if ok:
        return body["data"]
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    described = "a body that is not JSON" if body is None else "JSON that is not a Mogplex API envelope"
    raise UnexpectedResponseError(
        scrub(f"{what}: HTTP {status} with {described} ({kind}); is MOGPLEX_BASE_URL the Mogplex API?", token),
        status=status,
    )


def shape_error(exc: ValidationError, status: int, what: str, token: str) -> UnexpectedResponseError:
    """A 2xx whose data does not fit the model: name the field, never echo the values."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    return UnexpectedResponseError(
        scrub(f"{what}: the answer did not have the expected shape ({where}: {first['msg']})", token),
        status=status,
    )


def redirect_error(response: httpx2.Response, what: str, *, secret: str | None = None) -> ApiStatusError:
    """A redirect we do not follow: a login page means no valid token; anything else, misconfiguration."""
    status = response.status_code
    location = response.headers.get("location", "")
    try:
        target = response.request.url.join(location)
    except httpx2.InvalidURL:
        target = response.request.url
    segments = {segment.lower() for segment in target.path.split("/")}
    if segments & _LOGIN_SEGMENTS:
        return AuthenticationError(
            f"{what}: Mogplex redirected to its login page, which means the token is missing or invalid. "
            f"Check {TOKEN_ENV} (a personal access token starting with mog_).",
            status=status,
            code="UNAUTHORIZED",
        )
    shown = scrub(f"{target.scheme}://{target.host}{target.path}", secret)
    return UnexpectedResponseError(
        f"{what}: unexpected redirect (HTTP {status}) to {shown}; redirects are not followed. "
        "Check MOGPLEX_BASE_URL (it should be https://mogplex.com).",
        status=status,
    )
