"""Request bodies in aggregate: a cap per request, per client address and for the whole server (issue 23, #9).

A body is held in memory while it is read, parsed and served (the SDK buffers it, JSON parsing makes a few
times its size in objects), so a stranger sending many large bodies at once could otherwise make the server
hold gigabytes. `BodyBudget` counts the bytes of every body being read or served; a request that would push
its client address or the server past its share is refused (`429` / `503`, with `Retry-After`) before its
body is read, and a body larger than `per_request` is refused with `413` on its `Content-Length`, or as soon
as its chunks pass the cap. The gateway calls this only after the request's bearer passed its checks, so a
request without a plausible bearer is refused before a byte of its body is read.

The client address is the connection's peer, or the address a trusted proxy names in `X-Forwarded-For`
(uvicorn's `--forwarded-allow-ips`, loopback by default): behind a proxy, give it the proxy's address.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope

# A 100,000-character prompt (the longest start_run accepts) is at most ~600 KB even fully \u-escaped.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_BODY_BYTES_PER_CLIENT = 8 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024


@dataclass(frozen=True)
class BodyLimits:
    per_request: int = DEFAULT_MAX_BODY_BYTES
    per_client: int = DEFAULT_MAX_BODY_BYTES_PER_CLIENT
    total: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT

    def __post_init__(self) -> None:
        if min(self.per_request, self.per_client, self.total) < 1024:
            raise ValueError("body caps must be at least 1024 bytes")


class BodyRefused(Exception):
    """The body may not be read: `status` and `message` say why (413, 429 or 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "local"


class BodyBudget:
    """Bytes of request bodies held right now, per client address and in all (module docstring)."""

    def __init__(self, limits: BodyLimits | None = None) -> None:
        self.limits = limits or BodyLimits()
        self.in_flight = 0
        self.peak = 0
        self.refused = 0
        self._by_client: Counter[str] = Counter()

    def held_by(self, client: str) -> int:
        return self._by_client[client]

    def reserve(self, client: str, size: int) -> None:
        """Count `size` more bytes for `client`, or raise BodyRefused (nothing counted then)."""
        if size <= 0:
            return
        if self._by_client[client] + size > self.limits.per_client:
            self.refused += 1
            raise BodyRefused(
                429, f"Too many request bytes in flight from your address (at most {self.limits.per_client}): retry."
            )
        if self.in_flight + size > self.limits.total:
            self.refused += 1
            raise BodyRefused(503, "The server is reading as many request bytes as it takes at once: retry shortly.")
        self._by_client[client] += size
        self.in_flight += size
        self.peak = max(self.peak, self.in_flight)

    def release(self, client: str, size: int) -> None:
        if size <= 0:
            return
        self.in_flight -= size
        self._by_client[client] -= size
        if self._by_client[client] <= 0:
            del self._by_client[client]

    async def read(self, scope: Scope, receive: Receive, held: list[int]) -> Receive:
        """Read the whole body within the budget; return a `receive` that replays it.

        `held[0]` is what this request holds (the caller releases it when the request ends, refused or not).
        Raises BodyRefused before reading when the declared length does not fit, or as soon as it stops fitting.
        """
        client = client_address(scope)
        declared = _declared_length(scope)
        if declared is not None:
            if declared > self.limits.per_request:
                self.refused += 1
                raise BodyRefused(413, f"Request body too large (at most {self.limits.per_request} bytes).")
            self.reserve(client, declared)
            held[0] += declared
        chunks: list[bytes] = []
        size = 0
        trailing: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                trailing = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.per_request:
                self.refused += 1
                raise BodyRefused(413, f"Request body too large (at most {self.limits.per_request} bytes).")
            if size > held[0]:  # more than declared (or nothing was): count the rest as it comes
                self.reserve(client, size - held[0])
                held[0] = size
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay(b"".join(chunks), trailing, receive)


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _replay(body: bytes, trailing: Message | None, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if trailing is not None:
        pending.append(trailing)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
