"""The OAuth 2.1 front door of the shared HTTP server (`--public-url`; off by default; docs/oauth.md).

Mogplex has only PATs, and the MCP authorization spec forbids passing a client's token through, so this
server is its own authorization server: the user signs in once by pasting a PAT on our page, and the client
gets short-lived opaque tokens that stand for that PAT here. Built from the SDK's auth support
(`mcp.server.auth`): its handlers for RFC 8414 metadata, `/authorize` (PKCE S256 only), `/token`, `/register`
(RFC 7591) and `/revoke` (RFC 7009), RFC 9728 protected-resource metadata (root and `/mcp`-suffixed), around
our provider (`provider.py`), sign-in page (`signin.py`), client ids and metadata documents (`clients.py`),
key (`keys.py`), limits (`limits.py`), per-grant scopes (`scopes.py`) and revocation reaching open sessions and
streams (`revocation.py`). Grants live in the run-supervision
store (`runs/grant_store.py`: SQLite locally, Redis for replicas).

On `/mcp` the gateway asks `FrontDoor.resolve` for an access token's PAT and then treats the request exactly
as one that sent that PAT as its bearer: same fingerprint, sessions, runs, de-duplication and budgets.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp.server.auth.handlers.metadata import MetadataHandler, ProtectedResourceMetadataHandler
from mcp.server.auth.routes import (
    build_metadata,
    build_resource_metadata_url,
    cors_middleware,
    create_auth_routes,
    create_protected_resource_routes,
)
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import AuthenticationError, MogplexError, PermissionDeniedError
from mogplex_mcp.api.pool import make_http_client
from mogplex_mcp.api.retry import RetryPolicy
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.grant_store import GrantStore
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.oauth.clients import MetadataDocuments
from mogplex_mcp.server.transport.oauth.keys import load_keys
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions, RateLimiter
from mogplex_mcp.server.transport.oauth.provider import (
    ACCESS_PREFIX,
    SIGN_IN_PATH,
    FrontDoorProvider,
    Resolved,
)
from mogplex_mcp.server.transport.oauth.revocation import EndListens, GrantWatch
from mogplex_mcp.server.transport.oauth.scopes import ALL_SCOPES, GrantScopes
from mogplex_mcp.server.transport.oauth.signin import SignInPage

__all__ = [
    "ACCESS_PREFIX",
    "FrontDoor",
    "GrantScopes",
    "OAuthOptions",
    "Resolved",
    "build_front_door",
    "with_front_door",
]

logger = logging.getLogger("mogplex_mcp.oauth")

ROOT_RESOURCE_METADATA = "/.well-known/oauth-protected-resource"


class FrontDoor:
    """The provider, its routes, and what the gateway asks (`resolve`, `resource_metadata_url`, `watch`)."""

    access_prefix = ACCESS_PREFIX

    def __init__(self, settings: Settings, options: OAuthOptions, provider: FrontDoorProvider, closers: list[Any]):
        self.settings = settings
        self.options = options
        self.provider = provider
        self._closers = closers
        # Ends open sessions and listen streams of grants dropped here (at once) or elsewhere (checked).
        self.watch = GrantWatch(provider.store, options.revocation_check_seconds)
        provider.on_dropped.append(self.watch.ended)
        self.watch.before_check(provider.drop_rejected)
        self._http: httpx2.AsyncClient | None = None
        self.registrations = RateLimiter(options.registrations_per_minute, options.registrations_per_minute_total)
        self.sign_ins = RateLimiter(options.sign_ins_per_minute, options.sign_ins_per_minute_total)
        secure = options.public_url.startswith("https://")
        self.page = SignInPage(provider, self.check_pat, self.sign_ins, secure_cookie=secure)

    @property
    def resource_metadata_url(self) -> str:
        return str(build_resource_metadata_url(AnyHttpUrl(self.options.resource)))

    async def resolve(self, token: str) -> Resolved | None:
        return await self.provider.resolve(token)

    def routes(self) -> list[BaseRoute]:
        issuer = AnyHttpUrl(self.options.issuer)
        registration = ClientRegistrationOptions(
            enabled=True, valid_scopes=list(ALL_SCOPES), default_scopes=list(ALL_SCOPES)
        )
        revocation = RevocationOptions(enabled=True)
        routes: list[BaseRoute] = []
        for route in create_auth_routes(self.provider, issuer, None, registration, revocation):
            if route.path == "/register":
                route = Route(route.path, Limited(route.app, self.registrations), methods=["POST", "OPTIONS"])
            elif route.path == "/revoke":
                route = Route(route.path, PublicClientRevocation(StoreBusy(route.app)), methods=["POST", "OPTIONS"])
            elif route.path in ("/authorize", "/token"):
                route = Route(route.path, StoreBusy(route.app), methods=sorted(route.methods or ()))
            routes.append(route)
        # The SDK's metadata does not say we read client ID metadata documents; ours does.
        metadata = build_metadata(issuer, None, registration, revocation)
        metadata.client_id_metadata_document_supported = True
        routes[0] = Route(routes[0].path, cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]))  # type: ignore[attr-defined]
        resource = AnyHttpUrl(self.options.resource)
        routes += create_protected_resource_routes(resource, [issuer], list(ALL_SCOPES), "Mogplex")
        root = ProtectedResourceMetadata(
            resource=resource,
            authorization_servers=[issuer],
            scopes_supported=list(ALL_SCOPES),
            resource_name="Mogplex",
        )
        handler = cors_middleware(ProtectedResourceMetadataHandler(root).handle, ["GET", "OPTIONS"])
        routes.append(Route(ROOT_RESOURCE_METADATA, handler, methods=["GET", "OPTIONS"]))
        routes.append(Route(SIGN_IN_PATH, self.page.get, methods=["GET"]))
        routes.append(Route(SIGN_IN_PATH, self.page.post, methods=["POST"]))
        return routes

    def install(self, app: Starlette, server: MCPServer[Any]) -> None:
        """Mount the routes, scope every MCP message by its grant, end listen streams of revoked grants, watch
        open sessions' grants while the app runs, close the store with the app."""
        app.router.routes.extend(self.routes())
        app.state.front_door = self
        server.middleware.append(GrantScopes())
        server.middleware.append(EndListens(self.watch))
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(the_app: Starlette) -> AsyncIterator[Any]:
            async with inner(the_app) as state:
                try:
                    async with anyio.create_task_group() as watching:
                        watching.start_soon(self.watch.run, name="oauth grant watch")
                        try:
                            yield state
                        finally:
                            watching.cancel_scope.cancel()
                finally:
                    await self.aclose()

        app.router.lifespan_context = lifespan

    async def check_pat(self, pat: str) -> str | None:
        """Ask Mogplex (a read call, no retries) whether the PAT works; None: it does, else what to show."""
        if self._http is None:
            self._http = make_http_client(self.settings)
        client = MogplexClient(
            base_url=self.settings.base_url, token=pat, http=self._http,
            retry=RetryPolicy(max_retries=0, budget_seconds=self.options.pat_check_seconds),
        )  # fmt: skip
        try:
            await client.list_repos(limit=1, deadline=time.monotonic() + self.options.pat_check_seconds)
        except AuthenticationError:
            return (
                "Mogplex did not accept this token (401): check that you pasted all of it and that it has not "
                "expired or been revoked."
            )
        except PermissionDeniedError:
            return "Mogplex refused this token access to your repositories (403): use a token with read access."
        except MogplexError:
            logger.warning("could not check a PAT at sign-in: Mogplex did not answer usefully")
            return "Could not check the token with Mogplex right now: try again in a moment."
        return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        for close in self._closers:
            result = close()
            if hasattr(result, "__await__"):
                await result


class Limited:
    """An ASGI endpoint behind a per-address rate limiter (429 with a JSON OAuth error when over)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if scope.get("method") == "OPTIONS" or self.limiter.admit(address):
            await self.app(scope, receive, send)
            return
        body = {"error": "temporarily_unavailable", "error_description": "too many requests: retry in a minute"}
        await JSONResponse(body, status_code=429, headers={"Retry-After": "60"})(scope, receive, send)


class StoreBusy:
    """An SDK auth endpoint whose grant store failed for a moment (another process holds the SQLite file, Redis
    is away) answers 503 with a JSON OAuth error and Retry-After, instead of a bare 500: the client retries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except StoreUnavailableError as exc:
            if started:
                raise
            logger.warning("an OAuth request could not reach the grant store: %s", exc)
            body = {"error": "temporarily_unavailable", "error_description": "sign-in state is busy: retry shortly"}
            await JSONResponse(body, status_code=503, headers={"Retry-After": "1"})(scope, receive, send)


class PublicClientRevocation:
    """Lets a public client revoke without sending `client_secret` (RFC 7009 does not ask it to; the SDK's
    revocation handler requires the field, empty or not): an absent one is added, empty, before the handler."""

    MAX_BODY = 16 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > self.MAX_BODY:
                break
        if len(body) <= self.MAX_BODY and b"client_secret=" not in body:
            body += b"&client_secret=" if body else b"client_secret="
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def with_front_door(
    front_door: FrontDoor, settings: Settings, server_kwargs: dict[str, Any]
) -> tuple[Settings, dict[str, Any]]:
    """Settings and `create_server` arguments for a server behind the front door: no env-token stand-in (every
    caller signs in or sends a PAT), and Mogplex's 401s for a PAT reach the provider (its grants are dropped)."""
    outer = server_kwargs.get("on_state")

    def on_state(state: AppState) -> None:
        state.pool.gate.on_rejected.append(front_door.provider.pat_rejected)
        if outer is not None:
            outer(state)

    served = dataclasses.replace(settings, http_token_fallback=False)
    return served, {**server_kwargs, "on_state": on_state}


def build_front_door(settings: Settings, options: OAuthOptions) -> FrontDoor:
    """The front door for these settings: its key (ConfigError when Redis lacks a shared one) and store."""
    keys = load_keys(settings.state_dir, shared=bool(settings.redis_url))
    store, closers = grant_store_for(settings, options.store_wait_seconds)
    provider = FrontDoorProvider(options, keys, store, MetadataDocuments(options))
    return FrontDoor(settings, options, provider, closers)


def grant_store_for(settings: Settings, wait_seconds: float = 2.0) -> tuple[GrantStore, list[Any]]:
    """Redis when configured (shared by replicas), else SQLite in the state dir, waiting at most `wait_seconds`
    for a file another process holds; and how to close it."""
    if settings.redis_url:
        from mogplex_mcp.runs import redis as shared
        from mogplex_mcp.runs.backends import redis_limits
        from mogplex_mcp.runs.redis.grants import RedisGrantStore

        connection = shared.connect(settings.redis_url, limits=redis_limits(settings))  # the --redis-* budgets
        return RedisGrantStore(connection), [connection.aclose]
    from mogplex_mcp.runs.local.grants import LocalGrantStore

    local = LocalGrantStore.in_state_dir(settings.state_dir, busy_seconds=wait_seconds)
    return local, [local.close]
