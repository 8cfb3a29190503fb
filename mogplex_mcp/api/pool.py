"""The connection pools the client sends on: one for requests, one for long-lived event streams."""

from __future__ import annotations

import httpx2

from mogplex_mcp import __version__
from mogplex_mcp.api.observed import observe_pool
from mogplex_mcp.config import Settings

USER_AGENT = f"mogplex-mcp/{__version__}"
DEFAULT_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)
DEFAULT_CONNECTIONS = 20


def make_http_client(settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None) -> httpx2.AsyncClient:
    """The request pool one process shares. It carries no token: each MogplexClient sends its own."""
    timeout = httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    return new_pool(timeout, transport, connections=settings.upstream_connections)


def make_stream_client(settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None) -> httpx2.AsyncClient:
    """The event-stream pool: its own connections, so open streams never take a request's connection.

    A stream holds its connection for minutes, so none is kept alive afterwards beyond a few; the
    number open is bounded by the `UpstreamGate`'s stream budget before the pool is ever asked.
    """
    timeout = httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    return new_pool(timeout, transport, connections=settings.upstream_streams, keepalive=4)


def new_pool(
    timeout: httpx2.Timeout,
    transport: httpx2.AsyncBaseTransport | None,
    *,
    connections: int = DEFAULT_CONNECTIONS,
    keepalive: int | None = None,
) -> httpx2.AsyncClient:
    client = httpx2.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        limits=httpx2.Limits(
            max_connections=connections,
            max_keepalive_connections=keepalive if keepalive is not None else max(1, connections // 2),
        ),
        transport=transport,
    )
    return observe_pool(client)  # request metrics, spans and traceparent (api/observed.py)


def cut_timeout(base: httpx2.Timeout, remaining: float | None) -> httpx2.Timeout:
    """The pool's timeouts, each shortened to what is left of the call's time."""
    if remaining is None:
        return base

    def cut(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx2.Timeout(connect=cut(base.connect), read=cut(base.read), write=cut(base.write), pool=cut(base.pool))
