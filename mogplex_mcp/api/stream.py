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
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext

import httpx2
from pydantic import ValidationError

from mogplex_mcp.api.bodies import ERROR_BODY_BYTES, oversized, read_capped
from mogplex_mcp.api.client import API_PREFIX, USER_AGENT
from mogplex_mcp.api.errors import (
    MissingTokenError,
    MogplexError,
    error_from_response,
    error_from_transport,
    redirect_error,
    scrub,
)
from mogplex_mcp.api.limits import UpstreamGate
from mogplex_mcp.api.models import EVENTS_LIMIT_MAX, RunDetail, RunEvent, checked_uuid
from mogplex_mcp.config import TOKEN_ENV

logger = logging.getLogger("mogplex_mcp.api")

# Statuses that mean "this deployment has no stream endpoint" (the run itself was found by then).
_UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
# The largest event (its field lines together, or one line still missing its line break) read whole.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

StreamItem = RunDetail | RunEvent


class StreamUnsupportedError(MogplexError):
    """The upstream has no event stream endpoint: poll instead (and remember it for this base URL)."""


def stream_item(message: httpx2.ServerSentEvent) -> StreamItem | None:
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
        if "id" not in data and message.id:
            data = {**data, "id": message.id}
        if "type" not in data and message.event != "message":
            data = {**data, "type": message.event}
        return RunEvent.model_validate(data)
    except ValidationError:
        logger.debug("event stream: skipped a %r message of an unexpected shape", message.event[:40])
        return None


class EventStreamClient:
    """Opens event streams for one token, on the stream pool and within the gate's stream budget."""

    def __init__(
        self,
        *,
        token: str | None,
        http: httpx2.AsyncClient,
        idle_timeout: float = 30.0,
        gate: UpstreamGate | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._token = token.strip() if token else None
        self._http = http
        self._gate = gate
        self.idle_timeout = idle_timeout
        self.max_event_bytes = max_event_bytes

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

        Raises `StreamUnsupportedError` when the endpoint does not exist, `StreamBudgetExhaustedError`
        when no stream slot is free (nothing is sent), the client's typed errors for other failures (on
        connect and mid-stream: an event past `max_event_bytes` is an `OversizedResponseError` and ends
        the stream), `UpstreamTimeoutError` after `idle_timeout` seconds without a byte.
        """
        token = self._require_token()
        run_id = checked_uuid(run_id, "runId", "the runId that start_run returned")
        what = "GET /runs/{runId}/events/stream"
        if self._gate is not None:
            self._gate.check_rejected(token, what)
        url = f"{base_url.rstrip('/')}{API_PREFIX}/runs/{run_id}/events/stream"
        idle = self.idle_timeout if idle_timeout is None else idle_timeout
        connect = self._http.sse(
            url,
            params={"limit": str(limit)},
            headers=_headers(token, last_event_id),
            timeout=httpx2.Timeout(idle, connect=min(10.0, idle)),
            max_event_size=self.max_event_bytes,
        )
        async with self._slot(token), AsyncExitStack() as stack:
            try:
                source = await stack.enter_async_context(connect)
                await self._check_opened(source.response, what, token)
            except httpx2.HTTPError as exc:
                raise error_from_transport(exc, what, secret=token) from None
            items = _items(source, what, token, self.max_event_bytes)
            try:
                yield items
            finally:
                await items.aclose()

    def _slot(self, token: str) -> AbstractAsyncContextManager[None]:
        return self._gate.stream_slot(token) if self._gate is not None else nullcontext()

    async def _check_opened(self, response: httpx2.Response, what: str, token: str) -> None:
        if self._gate is not None and response.status_code == 401:
            self._gate.rejected(token)
        elif self._gate is not None and response.status_code < 300:
            self._gate.accepted(token)
        await _check_opened(response, what, token)

    def _require_token(self) -> str:
        if not self._token:
            raise MissingTokenError(f"No Mogplex token is configured: set {TOKEN_ENV}. Nothing was sent.")
        return self._token


def _headers(token: str, last_event_id: str | None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "User-Agent": USER_AGENT,
    }
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


async def _check_opened(response: httpx2.Response, what: str, token: str) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise redirect_error(response, what)
    if status in _UNSUPPORTED_STATUSES:
        raise StreamUnsupportedError(f"{what}: HTTP {status}; this Mogplex deployment has no event stream")
    if not 200 <= status < 300:
        body = await read_capped(response, what, ERROR_BODY_BYTES)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        raise error_from_response(status, parsed, retry_after=response.headers.get("retry-after"), secret=token)
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "text/event-stream":
        raise StreamUnsupportedError(scrub(f"{what}: HTTP {status} answered {kind or 'no content type'}", token))


async def _items(
    source: httpx2.EventSource, what: str, token: str, max_event_bytes: int
) -> AsyncGenerator[StreamItem, None]:
    """The items of an opened stream; httpx2's parser bounds each event and each unfinished line."""
    try:
        async for message in source:
            item = stream_item(message)
            if item is not None:
                yield item
    except httpx2.SSEError:
        logger.info("%s: an event was larger than %d bytes; dropping the stream", what, max_event_bytes)
        raise oversized(what, max_event_bytes, source.response.status_code) from None
    except httpx2.HTTPError as exc:
        raise error_from_transport(exc, what, secret=token) from None


def stream_clients(
    http: Callable[[], httpx2.AsyncClient],
    *,
    gate: UpstreamGate | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Callable[[str], EventStreamClient]:
    """A factory of stream clients, one per token, on the stream pool `http()` returns (built lazily)."""

    def make(token: str) -> EventStreamClient:
        return EventStreamClient(token=token, http=http(), gate=gate, max_event_bytes=max_event_bytes)

    return make
