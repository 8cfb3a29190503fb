"""The one shape of every answer: the `{ok, data}` / `{ok, error}` envelope, and the platform's non-envelopes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

ERROR_STATUS: dict[str, int] = {
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "AUTOMATION_REQUIRED": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}
# What the hosting platform answers when a route handler crashes (not an envelope).
PLATFORM_500 = "A server error has occurred\n\nFUNCTION_INVOCATION_FAILED\n"


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "data": data}, status_code=status)


def error(
    code: str, message: str, *, retry_after: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error envelope with the status its code implies (Retry-After when given)."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    body = {"ok": False, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=ERROR_STATUS[code], headers=extra)


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def unauthorized(request: Request, message: str = "Missing or invalid personal access token") -> JSONResponse:
    metadata = f"{base_url(request)}/.well-known/oauth-protected-resource"
    return error("UNAUTHORIZED", message, headers={"WWW-Authenticate": f'Bearer resource_metadata="{metadata}"'})


def login_redirect(request: Request) -> RedirectResponse:
    """Production's answer to a request without a bearer token: 307 to the login page."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{base_url(request)}/login?next={quote(target, safe='')}", status_code=307)


def platform_500() -> Response:
    return PlainTextResponse(PLATFORM_500, status_code=500, headers={"X-Vercel-Error": "FUNCTION_INVOCATION_FAILED"})
