"""Protocol honesty at the HTTP edge: answer what the SDK would leave silent or misname, before it runs.

- A stateless server keeps no stream open for a client, so `GET /mcp` (the handshake era's notification
  stream) is `405 Method Not Allowed`, never a stream on which nothing will ever arrive.
- An `MCP-Protocol-Version` header naming a revision this server does not speak is `400` saying so, with the
  revisions it speaks (the SDK would otherwise read an unknown revision as the modern era and complain about
  a missing `_meta` envelope).
- A JSON-RPC request whose `id` is `null` is `400 Invalid Request` (a notification has no `id` at all);
  the SDK would accept it as a notification and answer nothing.

It sits behind the gateway (an unauthenticated caller is refused before its body is read) and reads at most
`PEEK_LIMIT` bytes of a body to look for the `id`; a larger body passes through unread.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import INVALID_REQUEST
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PEEK_LIMIT = 1_000_000  # bytes: well above any valid request this server takes (a prompt is ≤ 100,000 chars)


class ProtocolChecks:
    """ASGI middleware for the MCP endpoint (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, path: str, stateless: bool) -> None:
        self.app = app
        self.path = path
        self.stateless = stateless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.stateless and scope["method"] == "GET":
            message = "This server runs stateless: it keeps no stream open, so GET is not served. POST requests."
            await _error(405, message, {"Allow": "POST"})(send)
            return
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in KNOWN_PROTOCOL_VERSIONS:
            shown = version[:40]
            message = (
                f"Unsupported MCP-Protocol-Version {shown!r}: this server speaks {', '.join(KNOWN_PROTOCOL_VERSIONS)}."
            )
            await _error(400, message)(send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = await _peek(receive)
        if _null_id_request(body):
            message = "Invalid Request: id must be a string or a number, not null (a notification has no id at all)."
            await _error(400, message)(send)
            return
        await self.app(scope, _replay(messages, receive), send)


async def _peek(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The body's first messages and, when the whole body fits in PEEK_LIMIT, its bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > PEEK_LIMIT:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _null_id_request(body: bytes | None) -> bool:
    if not body:
        return False
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json can follow (issue 23, #9)
        return False  # the SDK answers a parse error itself
    return isinstance(parsed, dict) and "method" in parsed and "id" in parsed and parsed["id"] is None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return respond
