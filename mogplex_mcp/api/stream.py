"""The run event stream: `GET /runs/{runId}/events/stream` (SSE, resumable with `Last-Event-ID`).

Newer production code serves it; older deployments (and the documented API) answer 404, which
becomes `StreamUnsupportedError` so the caller can fall back to polling and remember that. The
stream opens with an `event: run` message (the run's state), then one message per event
(`id:` = the event id, `event:` = its type, `data:` = the event as JSON), and closes after the
terminal event. Without `Last-Event-ID` it replays only the latest `limit` events; with one it
replays everything after that event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
from pydantic import ValidationError

from mogplex_mcp.api.client import API_PREFIX, USER_AGENT
from mogplex_mcp.api.errors import (
    MissingTokenError,
    MogplexError,
    error_from_response,
    error_from_transport,
    redirect_error,
    scrub,
)
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunDetail, RunEvent, checked_uuid
from mogplex_mcp.config import TOKEN_ENV

logger = logging.getLogger("mogplex_mcp.api")

# Statuses that mean "this deployment has no stream endpoint" (the run itself was found by then).
_UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
_ERROR_BODY_LIMIT = 64 * 1024

StreamItem = RunDetail | RunEvent


class StreamUnsupportedError(MogplexError):
    """The upstream has no event stream endpoint: poll instead (and remember it for this base URL)."""


@dataclass
class SseMessage:
    """One dispatched server-sent event."""

    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class SseParser:
    """Line-by-line SSE parser (the WHATWG rules this API needs: fields, comments, multi-line data)."""

    last_event_id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False

    def feed(self, line: str) -> SseMessage | None:
        """Take one line (without its line break); return a message when a blank line dispatches one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> SseMessage | None:
        message = None
        if self._has_data:
            message = SseMessage(event=self._event or "message", data="\n".join(self._data), id=self.last_event_id)
        self._event, self._data, self._has_data = "", [], False
        return message


def stream_item(message: SseMessage) -> StreamItem | None:
    """The run state or event a message carries; None for anything unreadable (skipped, never fatal)."""
    try:
        data = json.loads(message.data)
    except (ValueError, RecursionError):
        logger.debug("event stream: skipped a %r message that is not JSON", message.event[:40])
        return None
    if not isinstance(data, dict):
        return None
    try:
        if message.event == "run":
            inner = data.get("run")
            return RunDetail.model_validate(inner if isinstance(inner, dict) else data)
        if "id" not in data and message.id is not None:
            data = {**data, "id": message.id}
        if "type" not in data and message.event != "message":
            data = {**data, "type": message.event}
        return RunEvent.model_validate(data)
    except ValidationError:
        logger.debug("event stream: skipped a %r message of an unexpected shape", message.event[:40])
        return None


class EventStreamClient:
    """Opens event streams for one token over the shared connection pool."""

    def __init__(self, *, token: str | None, http: httpx2.AsyncClient, idle_timeout: float = 30.0) -> None:
        self._token = token.strip() if token else None
        self._http = http
        self.idle_timeout = idle_timeout

    def __repr__(self) -> str:
        return "EventStreamClient(token=<hidden>)"

    @asynccontextmanager
    async def open(
        self,
        base_url: str,
        run_id: str,
        *,
        last_event_id: str | None = None,
        limit: int = EVENTS_LIMIT_MAX,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[AsyncIterator[StreamItem]]:
        """Connect; yield the stream's items (the run state first, then events, oldest first).

        Raises `StreamUnsupportedError` when the endpoint does not exist, the client's typed errors
        for other failures (on connect and mid-stream), `UpstreamTimeoutError` after `idle_timeout`
        seconds without a byte (default: the client's).
        """
        token = self._require_token()
        run_id = checked_uuid(run_id, "runId", "the runId that start_run or a run listing returned")
        what = "GET /runs/{runId}/events/stream"
        url = f"{base_url.rstrip('/')}{API_PREFIX}/runs/{run_id}/events/stream"
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "User-Agent": USER_AGENT,
        }
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        idle = self.idle_timeout if idle_timeout is None else idle_timeout
        timeout = httpx2.Timeout(idle, connect=min(10.0, idle))
        request = self._http.build_request("GET", url, params={"limit": str(limit)}, headers=headers, timeout=timeout)
        try:
            response = await self._http.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise error_from_transport(exc, what, secret=token) from None
        items = _items(response, what, token)
        try:
            try:
                await _check_opened(response, what, token)
            except httpx2.HTTPError as exc:
                raise error_from_transport(exc, what, secret=token) from None
            yield items
        finally:
            await items.aclose()
            await response.aclose()

    def _require_token(self) -> str:
        if not self._token:
            raise MissingTokenError(f"No Mogplex token is configured: set {TOKEN_ENV}. Nothing was sent.")
        return self._token


async def _check_opened(response: httpx2.Response, what: str, token: str) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise redirect_error(response, what)
    if status in _UNSUPPORTED_STATUSES:
        raise StreamUnsupportedError(f"{what}: HTTP {status}; this Mogplex deployment has no event stream")
    if not 200 <= status < 300:
        body = await _bounded_body(response)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        raise error_from_response(status, parsed, retry_after=response.headers.get("retry-after"), secret=token)
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "text/event-stream":
        raise StreamUnsupportedError(scrub(f"{what}: HTTP {status} answered {kind or 'no content type'}", token))


async def _bounded_body(response: httpx2.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


async def _items(response: httpx2.Response, what: str, token: str) -> AsyncGenerator[StreamItem, None]:
    parser = SseParser()
    try:
        async for line in response.aiter_lines():
            message = parser.feed(line.rstrip("\r\n"))
            if message is None:
                continue
            item = stream_item(message)
            if item is not None:
                yield item
    except httpx2.HTTPError as exc:
        raise error_from_transport(exc, what, secret=token) from None


def stream_clients(http: Callable[[], httpx2.AsyncClient]) -> Callable[[str], EventStreamClient]:
    """A factory of stream clients, one per token, on the shared pool `http()` returns (built lazily)."""

    def make(token: str) -> EventStreamClient:
        return EventStreamClient(token=token, http=http())

    return make
