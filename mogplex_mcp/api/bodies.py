"""Reading an upstream body with a cap: an answer larger than the cap is an error, never a buffer."""

from __future__ import annotations

import httpx2

from mogplex_mcp.api.errors import OversizedResponseError
from mogplex_mcp.api.observed import route_of_call
from mogplex_mcp.telemetry import hooks

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# An error answer is read this far and no further (its message is all we want from it).
ERROR_BODY_BYTES = 64 * 1024


def megabytes(size: int) -> str:
    """`size` bytes for a message: "4 MB", "1.5 MB", "512 KB"."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{max(1, size // 1024)} KB"


def oversized(what: str, limit: int, status: int) -> OversizedResponseError:
    hooks.recorder().upstream_oversized(route_of_call(what))
    return OversizedResponseError(
        f"{what}: Mogplex sent an oversized answer (more than {megabytes(limit)}); it was not read further. "
        "Real answers are far smaller: a proxy or the service misbehaved. Retrying later may help.",
        status=status,
        limit=limit,
    )


async def read_capped(response: httpx2.Response, what: str, limit: int) -> bytes:
    """The body of a streamed `response`, at most `limit` bytes (`ERROR_BODY_BYTES` for a non-2xx).

    A success larger than that raises OversizedResponseError as soon as the cap is passed (or at once,
    when Content-Length says so); an error answer is cut, since its status already says what happened.
    """
    status = response.status_code
    cap = limit if 200 <= status < 300 else min(limit, ERROR_BODY_BYTES)
    declared = response.headers.get("content-length", "")
    if 200 <= status < 300 and declared.isdigit() and int(declared) > cap:
        raise oversized(what, cap, status)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            if 200 <= status < 300:
                raise oversized(what, cap, status)
            chunks.append(chunk[: len(chunk) - (size - cap)])
            break
        chunks.append(chunk)
    return b"".join(chunks)
