"""The one redirect the client follows: production's www. → apex, learned once per connection pool."""

from __future__ import annotations

import logging
import weakref

import httpx2

logger = logging.getLogger("mogplex_mcp.api")

# Base URLs learned from a www. → apex redirect, per connection pool: every client sharing the pool
# goes straight to the apex afterwards, and a fresh pool (a test, another process) starts clean.
_learned_bases: weakref.WeakKeyDictionary[httpx2.AsyncClient, dict[str, str]] = weakref.WeakKeyDictionary()


def learned_base(http: httpx2.AsyncClient, base_url: str) -> str:
    """`base_url`, or the apex this pool learned it redirects to."""
    learned = _learned_bases.get(http)
    if learned is not None and base_url in learned:
        return learned[base_url]
    return base_url


def adopt_apex(http: httpx2.AsyncClient, base_url: str, response: httpx2.Response) -> str | None:
    """The apex to resend to when `response` is a 307/308 from www.<host> to <host> (same path); else None."""
    if response.status_code not in (307, 308) or "location" not in response.headers:
        return None
    sent = response.request.url
    try:
        target = sent.join(response.headers["location"])
    except httpx2.InvalidURL:
        return None
    if not (
        sent.host.startswith("www.")
        and target.host == sent.host[4:]
        and target.scheme == sent.scheme
        and target.port == sent.port
        and target.path == sent.path
    ):
        return None
    apex = base_url.replace("://www.", "://", 1)
    _learned_bases.setdefault(http, {})[base_url] = apex
    logger.debug("%s redirects to %s: using the apex from now on", base_url, apex)
    return apex
