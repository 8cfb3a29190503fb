"""Fault injection: the next N matching requests fail the way proxies, outages and networks fail."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.lowlevel
from starlette.responses import HTMLResponse, Response, StreamingResponse

from mogplex_mcp.emulator.responses import error

FAULT_KINDS: tuple[str, ...] = (
    "html_502",
    "unavailable_503",
    "internal_500",
    "rate_limited_429",
    "delay",
    "hang",
    "drop_after_commit",
    "oversized_body",
    "oversized_sse_line",
    "oversized_sse_event",
)
# The oversized_* faults stream `size` bytes (this default when none is given) in chunks of CHUNK_BYTES,
# generated as they are sent: the emulator never holds the body.
DEFAULT_OVERSIZE_BYTES = 50 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# What nginx answers when the service behind it is down (same text as tests/fixtures/html_502.html).
HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>"
)
DEFAULT_RETRY_AFTER = 60


class ConnectionDropped(ConnectionResetError):
    """Raised in-process where a real server would drop the connection without an HTTP answer."""


@dataclass
class Fault:
    """One armed fault: `remaining` more requests matching method/path get it."""

    kind: str
    remaining: int = 1
    method: str | None = None
    path: str | None = None
    delay: float = 0.0
    retry_after: int | None = None
    size: int | None = None

    def matches(self, method: str, path: str) -> bool:
        """Method matches case-insensitively; `path` is exact or a prefix ending at a '/'."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        prefix = self.path.rstrip("/")
        return path == self.path or path == prefix or path.startswith(prefix + "/")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Armed faults in the order they were injected; the first match is used and counted down."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
        retry_after: int | None = None,
        size: int | None = None,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("fault count must be at least 1")
        if delay < 0 or (retry_after is not None and retry_after < 0):
            raise ValueError("fault delay and retry_after must not be negative")
        if size is not None and size < 1:
            raise ValueError("fault size must be at least 1 byte")
        fault = Fault(kind, count, method, path, float(delay), retry_after, size)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The fault this request gets, if any (its count goes down by one)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def armed(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def fault_response(fault: Fault) -> Response | None:
    """The canned answer of a status fault; None for delay/hang/drop, which the app handles."""
    retry_after = fault.retry_after if fault.retry_after is not None else DEFAULT_RETRY_AFTER
    if fault.kind == "html_502":
        return HTMLResponse(HTML_502, status_code=502)
    if fault.kind == "unavailable_503":
        return error("SERVICE_UNAVAILABLE", "Limit check backend unavailable", retry_after=retry_after)
    if fault.kind == "internal_500":
        return error("INTERNAL_ERROR", "Unexpected server error")
    if fault.kind == "rate_limited_429":
        return error("RATE_LIMITED", "Rate limit exceeded", retry_after=retry_after)
    if fault.kind in OVERSIZED:
        media = "application/json" if fault.kind == "oversized_body" else "text/event-stream"
        return StreamingResponse(OVERSIZED[fault.kind](fault.size or DEFAULT_OVERSIZE_BYTES), media_type=media)
    return None


async def _padded(head: bytes, filler: bytes, size: int, tail: bytes) -> AsyncIterator[bytes]:
    """`head`, then `filler` repeated to `size` bytes in all, then `tail`: one chunk at a time."""
    yield head
    sent = len(head) + len(tail)
    chunk = filler * max(1, CHUNK_BYTES // len(filler))
    while sent < size:
        piece = chunk[: size - sent]
        sent += len(piece)
        yield piece
        # Sending to a client that hung up returns at once: yield to the loop, so that Starlette's
        # disconnect watcher can end this response instead of it running on into the void.
        await anyio.lowlevel.checkpoint()
    yield tail


def _oversized_body(size: int) -> AsyncIterator[bytes]:
    """A valid success envelope for any GET (repos: none), padded to `size`: a reader without a cap takes it."""
    return _padded(b'{"ok": true, "data": {"repos": [], "events": [], "padding": "', b"x", size, b'"}}')


def _oversized_sse_line(size: int) -> AsyncIterator[bytes]:
    """An event stream whose first line never ends: `size` bytes of `data:` without a line break."""
    return _padded(b"data: ", b"x", size, b"")


def _oversized_sse_event(size: int) -> AsyncIterator[bytes]:
    """An event stream of short `data:` lines, `size` bytes of them, and never the blank line that ends an event."""
    return _padded(b"", b"data: " + b"x" * 1018 + b"\n", size, b"")


OVERSIZED = {
    "oversized_body": _oversized_body,
    "oversized_sse_line": _oversized_sse_line,
    "oversized_sse_event": _oversized_sse_event,
}
