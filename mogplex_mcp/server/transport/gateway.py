"""What a shared HTTP server does before a request reaches MCP: who is calling, session binding, session caps.

- **Who is calling**: the fingerprint of the request's bearer (`token_fingerprint`; the token itself is not
  kept). A server that is not local-only answers a request without a usable bearer with `401` and a
  `WWW-Authenticate: Bearer` challenge before anything else happens: no session, no upstream call.
- **Session binding**: the caller is handed to the SDK as `scope["user"]`, an `AuthenticatedUser` whose
  `client_id` is the fingerprint. The SDK's session manager then remembers who opened each session and answers
  `404 Session not found` to anyone else (GET and DELETE included); the gateway refuses a known session
  presented with another token the same way before the SDK sees it.
- **Session caps**: `SessionRegistry` (per token, and for the whole server), evicting the oldest idle session
  of the same token first, so a flood from one caller costs that caller its own sessions, never another's.
- **Revocation**: a request authorised by an OAuth access token carries its grant id in the scope
  (`oauth/revocation.py`), the sessions it opens or uses remember the grant, and the gateway ends them (its
  GET stream with them) when the grant is revoked, here or elsewhere.
- Session ids are bearer-like secrets: the SDK logs them at INFO, so its loggers get a filter that masks them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp_types import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.server.transport.bodies import BodyBudget, BodyRefused, client_address
from mogplex_mcp.server.transport.oauth.revocation import GRANT_KEY
from mogplex_mcp.server.transport.sessions import OpenSession, SessionLimitError, SessionRegistry
from mogplex_mcp.server.transport.strangers import StrangerRefused, StrangerRequests

if TYPE_CHECKING:
    from mogplex_mcp.server.transport.oauth import FrontDoor

logger = logging.getLogger("mogplex_mcp.http")

MAX_TOKEN_CHARS = 1024
REALM = "mogplex-mcp"
HOW_TO_AUTHENTICATE = (
    "This MCP server is shared: send your own Mogplex personal access token with every request, as the HTTP "
    "header `Authorization: Bearer mog_…` (e.g. `claude mcp add --transport http mogplex <url> -H "
    '"Authorization: Bearer mog_…"`). Create a token in Mogplex under Settings → API tokens.'
)
_SESSION_ID_HEADER = MCP_SESSION_ID_HEADER.lower()
_SDK_SESSION_LOGGERS = ("mcp.server.streamable_http_manager", "mcp.server.streamable_http")
_SESSION_ID = re.compile(r"\b[0-9a-f]{32}\b")
# RFC 6750's token68: what a bearer can plausibly be. Anything else is refused before its body is read.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PER_REQUEST = frozenset({"headers", "user", "auth", GRANT_KEY, "query_string"})


@dataclass(frozen=True)
class GatewayPolicy:
    """Where MCP is served, who may call without a bearer, whose token stands in then, whether sessions exist."""

    path: str
    require_bearer: bool
    fallback_token: str | None
    stateful: bool


@dataclass(frozen=True)
class Caller:
    """The identity a request acts under: a token fingerprint, or None for an anonymous local caller.

    `scopes` are an OAuth grant's (`oauth/scopes.py`); a PAT bearer has none (the PAT's own permissions apply).
    """

    fingerprint: str | None
    scopes: tuple[str, ...] = ()

    def user(self) -> AuthenticatedUser | None:
        if self.fingerprint is None:
            return None
        # `token` holds the fingerprint too: the PAT itself stays in the request's headers, nowhere else.
        token = AccessToken(token=self.fingerprint, client_id=self.fingerprint, scopes=list(self.scopes))
        return AuthenticatedUser(token)


class BearerProblem(Exception):
    """The request carries no usable bearer; `description` says what is wrong with it (None: there is none)."""

    def __init__(self, description: str | None) -> None:
        super().__init__(description or "no bearer token")
        self.description = description


def bearer_of(headers: Headers) -> str | None:
    """The request's bearer token; None without an Authorization header; BearerProblem for an unusable one."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    token = credentials.strip()
    if scheme.lower() != "bearer" or not token:
        raise BearerProblem("the Authorization header must be `Bearer <token>`")
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN68.fullmatch(token):
        raise BearerProblem("the bearer token is malformed")
    return token


class Gateway:
    """ASGI middleware in front of the MCP endpoint (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        policy: GatewayPolicy,
        sessions: SessionRegistry,
        bodies: BodyBudget | None = None,
        strangers: StrangerRequests | None = None,
        front_door: FrontDoor | None = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.sessions = sessions
        self.bodies = bodies or BodyBudget()
        self.strangers = strangers or StrangerRequests()
        # With OAuth on (`--public-url`), access tokens stand for their grant's PAT and the 401 names the metadata.
        self.front_door = front_door
        # The last session-opening request's scope, without its headers and caller: what a session ended outside
        # any request (its grant revoked) is ended through.
        self._template: Scope | None = None
        if front_door is not None:
            front_door.watch.add_holder(self)
        mask_session_ids_in_sdk_logs()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.policy.path:
            await self.app(scope, receive, send)
            return
        scope.pop(GRANT_KEY, None)  # only the gateway says which grant a request acts under
        headers = Headers(scope=scope)
        scopes: tuple[str, ...] = ()
        try:
            if self.front_door is not None:
                headers, scopes = await self._oauth(scope, headers)
            caller = self.identify(headers)
        except BearerProblem as problem:
            self.sessions.unauthenticated += 1
            metadata = self.front_door.resource_metadata_url if self.front_door is not None else None
            await _unauthorized(problem.description, metadata)(scope, receive, send)
            return
        except StoreUnavailableError as exc:
            logger.warning("an OAuth token could not be checked: %s", exc)
            await _json_error(503, "Sign-in state is unavailable for a moment: retry shortly.")(scope, receive, send)
            return
        caller = Caller(caller.fingerprint, scopes)
        user = caller.user()
        if user is not None:
            scope["user"], scope["auth"] = user, AuthCredentials([])
        if not self.sessions.stranger(caller.fingerprint):
            await self._admitted(caller, headers, scope, receive, send)
            return
        client = client_address(scope)
        try:
            self.strangers.enter(client)
        except StrangerRefused as refused:
            logger.info("refused a request of an unverified token: %s", refused.message)
            await _json_error(refused.status, refused.message, headers={"Retry-After": "1"})(scope, receive, send)
            return
        try:
            await self._admitted(caller, headers, scope, receive, send)
        finally:
            self.strangers.leave(client)

    async def _admitted(self, caller: Caller, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self._route(caller, headers, scope, receive, send)
            return
        held, client = [0], client_address(scope)
        try:
            try:
                replay = await self.bodies.read(scope, receive, held)
            except BodyRefused as refused:
                logger.info("refused a request body: %s", refused.message)
                retry = {} if refused.status == 413 else {"Retry-After": "1"}
                await _json_error(refused.status, refused.message, headers=retry)(scope, receive, send)
                return
            await self._route(caller, headers, scope, replay, send)
        finally:
            self.bodies.release(client, held[0])

    async def _route(self, caller: Caller, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.policy.stateful or _modern(headers):
            await self.app(scope, receive, send)  # no HTTP session on these paths
            return
        session_id = headers.get(_SESSION_ID_HEADER)
        if session_id is None:
            await self._open(caller, headers, scope, receive, send)
        else:
            await self._use(caller, session_id, scope, receive, send)

    async def _oauth(self, scope: Scope, headers: Headers) -> tuple[Headers, tuple[str, ...]]:
        """An OAuth access token becomes its grant's PAT, in place, for everything downstream (its grant's id
        beside it, `GRANT_KEY`); else as is."""
        assert self.front_door is not None
        token = bearer_of(headers)
        if token is None or not token.startswith(self.front_door.access_prefix):
            return headers, ()
        resolved = await self.front_door.resolve(token)
        if resolved is None:
            raise BearerProblem("the access token is invalid, expired or revoked: sign in again")
        raw = [(name, value) for name, value in scope["headers"] if name.lower() != b"authorization"]
        scope["headers"] = [*raw, (b"authorization", b"Bearer " + resolved.pat.encode())]
        scope[GRANT_KEY] = resolved.grant_id
        return Headers(scope=scope), resolved.scopes

    def identify(self, headers: Headers) -> Caller:
        """Mirror of `state.token_from_request`: the bearer, else the env token where allowed, else anonymous."""
        try:
            token = bearer_of(headers)
        except BearerProblem:
            if self.policy.require_bearer:
                raise
            return Caller(None)  # as today on a local-only server: the tools say how to send a token
        if token is not None:
            return Caller(token_fingerprint(token))
        if self.policy.require_bearer:
            raise BearerProblem(None)
        fallback = self.policy.fallback_token
        return Caller(token_fingerprint(fallback) if fallback else None)

    async def _open(self, caller: Caller, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front_door is not None:
            self._template = {key: value for key, value in scope.items() if key not in _PER_REQUEST}
        try:
            client = client_address(scope)
            stranger = self.sessions.stranger(caller.fingerprint)
            victims = self.sessions.reserve(caller.fingerprint, client)
        except SessionLimitError as exc:
            logger.info("refused a new MCP session: %s", exc.message)  # per request: INFO, not a flood of warnings
            await _json_error(exc.status, exc.message)(scope, receive, send)
            return
        for victim in victims:
            await self._terminate(victim, scope)
        opened: list[OpenSession] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                session_id = Headers(raw=message.get("headers", [])).get(_SESSION_ID_HEADER)
                if session_id and not opened:
                    host = headers.get("host", "").encode()
                    session = self.sessions.opened(session_id, caller.fingerprint, host, client)
                    if grant_id := scope.get(GRANT_KEY):
                        session.grants.add(grant_id)
                    self.sessions.release(caller.fingerprint, client, stranger=stranger)  # the session counts itself
                    self.sessions.begin(session)
                    opened.append(session)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if opened:
                self.sessions.end(opened[0])
            else:
                self.sessions.release(caller.fingerprint, client, stranger=stranger)

    async def _use(self, caller: Caller, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            await self.app(scope, receive, send)  # unknown or expired: the SDK answers 404 (and binds, anyway)
            return
        if session.fingerprint != caller.fingerprint:
            await _json_error(404, "Session not found")(scope, receive, send)  # exactly as if it did not exist
            return
        if grant_id := scope.get(GRANT_KEY):
            session.grants.add(grant_id)
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        self.sessions.begin(session)
        try:
            await self.app(scope, receive, watch)
        finally:
            self.sessions.end(session)
            ended = scope["method"] == "DELETE" and status and status[0] < 300
            if ended or status == [404]:
                self.sessions.closed(session_id)

    def grants_in_use(self) -> set[str]:
        return self.sessions.grants_in_use()

    async def end_sessions_of(self, grant_ids: Collection[str]) -> int:
        """End every session a revoked grant opened or used, its GET stream with it; how many."""
        ended = self.sessions.take_sessions_of(grant_ids)
        template = self._template
        if template is not None:  # else no request ever came: there is no session either
            for session in ended:
                await self._terminate(session, template)
        return len(ended)

    async def _terminate(self, session: OpenSession, current: Scope) -> None:
        """End an evicted session through the SDK's own DELETE path, as its owner would."""
        scope = dict(current)
        scope["method"] = "DELETE"
        scope["headers"] = [(b"host", session.host), (_SESSION_ID_HEADER.encode(), session.session_id.encode())]
        scope["query_string"] = b""
        scope.pop("user", None)
        scope.pop("auth", None)
        scope.pop(GRANT_KEY, None)
        user = Caller(session.fingerprint).user()
        if user is not None:
            scope["user"], scope["auth"] = user, AuthCredentials([])
        await self.app(scope, _empty_body(), _discard)


def _modern(headers: Headers) -> bool:
    version = headers.get("mcp-protocol-version")
    return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS


def _empty_body() -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _discard(message: Message) -> None:
    return None


ASGIResponse = Callable[[Scope, Receive, Send], Awaitable[None]]


def _json_error(status: int, message: str, *, headers: dict[str, str] | None = None, **data: object) -> ASGIResponse:
    """A JSON-RPC error body without an id (the request was refused before it was read), like the SDK's."""
    error: dict[str, object] = {"code": INVALID_REQUEST, "message": message}
    if data:
        error["data"] = data
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return respond


def _unauthorized(problem: str | None, resource_metadata: str | None = None) -> ASGIResponse:
    challenge = f'Bearer realm="{REALM}"'
    if resource_metadata is not None:  # OAuth on: RFC 9728 discovery starts here
        challenge += f', resource_metadata="{resource_metadata}"'
    if problem is not None:
        error = "invalid_token" if resource_metadata is not None else "invalid_request"
        challenge += f', error="{error}", error_description="{problem}"'
    how = HOW_TO_AUTHENTICATE
    if resource_metadata is not None:
        how += (
            " Or sign in with OAuth: add this server's URL as a remote connector; your client reads "
            + resource_metadata
        )
    message = f"Authentication required: {problem}. {how}" if problem else how
    return _json_error(
        401,
        message,
        headers={"WWW-Authenticate": challenge},
        header="Authorization: Bearer <your Mogplex token>",
    )


class SessionIdMask(logging.Filter):
    """Masks session ids (32 hex digits) in the SDK's transport logs: whoever reads one could use the session."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _SESSION_ID.sub("<session id>", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_session_ids_in_sdk_logs() -> None:
    for name in _SDK_SESSION_LOGGERS:
        sdk_logger = logging.getLogger(name)
        if not any(isinstance(existing, SessionIdMask) for existing in sdk_logger.filters):
            sdk_logger.addFilter(SessionIdMask())
