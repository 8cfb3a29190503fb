"""Upstream telemetry as a transport: each request timed, counted by route template and status, wrapped in
a CLIENT span, and sent with the W3C `traceparent` of that span.

The client knows nothing of it: `observe_pool` wraps the transports a pool sends on — its own and any
proxy mounts taken from the environment — the way OpenTelemetry's httpx instrumentation does
(`instrument_client`). Passing a wrapped transport to the pool's constructor instead would switch httpx's
environment proxies off. What is recorded is the method, the route template
(`/runs/{runId}/events`, never the id), the status and the Retry-After of a 429 — never a header value,
a query or a body. The two things only the client sees (a call refused because its token was rejected
moments ago, an answer past the size cap) are reported from `limits.py` and `bodies.py` through the same hooks.
"""

from __future__ import annotations

import re
import time

import anyio
import httpx2

from mogplex_mcp.api.errors import parse_retry_after
from mogplex_mcp.telemetry import hooks, tracing

API_PREFIX = "/api/v1/mogplex"  # client.API_PREFIX (client imports the pools, so not from there)
_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Every route the client calls; anything else (a misconfigured base URL, a redirect target) is "other".
ROUTES = frozenset(
    {
        "/repos",
        "/runs",
        "/runs/{runId}",
        "/runs/{runId}/events",
        "/runs/{runId}/events/stream",
        "/runs/{runId}/cancel",
    }
)


def route_template(path: str) -> str:
    """`/api/v1/mogplex/runs/<uuid>/events` → `/runs/{runId}/events`; unknown paths → `other`."""
    _, found, rest = path.partition(API_PREFIX)
    if not found:
        return "other"
    parts = ["{runId}" if _ID.match(part) else part for part in rest.rstrip("/").split("/")]
    route = "/".join(parts)
    return route if route in ROUTES else "other"


def route_of_call(what: str) -> str:
    """The route template of a call described as "GET /runs/<id>" (how the client names its calls)."""
    _, _, path = what.partition(" ")
    return route_template(API_PREFIX + path.split("?", 1)[0])


class ObservedTransport(httpx2.AsyncBaseTransport):
    """Wraps a transport: a span, a traceparent and the request metrics around each request it sends."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        method = request.method
        route = route_template(request.url.path)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.template": route,
            "server.address": request.url.host,
        }
        if request.url.port is not None:
            attributes["server.port"] = request.url.port
        started = time.perf_counter()
        status = "error"
        retry_after: float | None = None
        try:
            with tracing.span(f"{method} {route}", attributes, kind=tracing.SpanKind.CLIENT) as span:
                tracing.inject_traceparent(request.headers)
                response = await self._inner.handle_async_request(request)
                status = str(response.status_code)
                if span.is_recording():
                    span.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code >= 400:  # a CLIENT span fails on 4xx too (semantic conventions)
                        span.set_attribute("error.type", status)
                        span.set_status(tracing.StatusCode.ERROR)
                if response.status_code == 429:
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                return response
        except anyio.get_cancelled_exc_class():
            status = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - started
            hooks.recorder().upstream_response(method, route, status, seconds, retry_after)

    async def aclose(self) -> None:
        await self._inner.aclose()


def observe_pool(client: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """`client`, its transport and proxy mounts wrapped in `ObservedTransport` (once)."""
    if not isinstance(client._transport, ObservedTransport):
        client._transport = ObservedTransport(client._transport)
        client._mounts = {
            pattern: None if mounted is None else ObservedTransport(mounted)
            for pattern, mounted in client._mounts.items()
        }
    return client
