"""The SDK's `OAuthAuthorizationServerProvider`, implemented over a `GrantStore` and the server key.

The SDK's handlers (`mcp.server.auth`) parse and check the requests (client, redirect URI exact match, PKCE
S256, code expiry and binding); this provider decides what exists:

- `/authorize` ends here by sending the browser to our sign-in page, the request sealed into its URL (no
  server-side state for a caller who has not signed in). The page calls `issue_code` after checking the PAT.
- A code is single-use (`take_code`), bound to its client, redirect URI, PKCE challenge and resource.
- Tokens are opaque random strings (`mcpa_…` access, `mcpr_…` refresh) stored under their hash; an access
  token lives `access_token_minutes`; a refresh token rotates on every use, and presenting a used one again
  revokes the whole grant (someone holds a copy). Revoking either token drops the grant.
- `resolve` is what the gateway asks for each MCP request: the grant's PAT (opened from its seal), its
  fingerprint and scopes, when the token is live, its grant is, and it was issued for this resource.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    IdentityAssertionParams,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from mogplex_mcp.runs.grant_store import Grant, GrantStore, IssuedCode, IssuedToken, TokenKind, secret_hash
from mogplex_mcp.server.transport.oauth.clients import MetadataDocuments, RegisteredClients
from mogplex_mcp.server.transport.oauth.keys import Keys
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions
from mogplex_mcp.server.transport.oauth.scopes import ALL_SCOPES
from mogplex_mcp.telemetry import hooks

logger = logging.getLogger("mogplex_mcp.oauth")

ACCESS_PREFIX = "mcpa_"
REFRESH_PREFIX = "mcpr_"
CODE_PREFIX = "mcpc_"
SIGN_IN_PATH = "/oauth/sign-in"
_SIGN_IN_CONTEXT = b"mogplex-mcp sign-in request"
_MAX_REMEMBERED_REJECTIONS = 10_000


class GrantCode(AuthorizationCode):
    grant_id: str
    fingerprint: str
    sealed_pat: str


class GrantRefreshToken(RefreshToken):
    grant_id: str


class GrantAccessToken(AccessToken):
    grant_id: str


@dataclass(frozen=True)
class SignInRequest:
    """An /authorize request the SDK accepted, waiting for the user on the sign-in page (sealed in its URL)."""

    client_id: str
    client_name: str | None
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    state: str | None
    scopes: tuple[str, ...]
    resource: str
    expires_at: float


@dataclass(frozen=True)
class Resolved:
    """What an access token stands for: the PAT it acts with (never stored in clear), whose, and what it may do."""

    pat: str
    fingerprint: str
    scopes: tuple[str, ...]
    grant_id: str


class FrontDoorProvider:
    """See the module docstring."""

    def __init__(self, options: OAuthOptions, keys: Keys, store: GrantStore, documents: MetadataDocuments) -> None:
        self.options = options
        self.keys = keys
        self.store = store
        self.registered = RegisteredClients(keys)
        self.documents = documents
        # PAT fingerprints Mogplex answered 401 for: their grants are dropped at their next use, or at the
        # grant watch's next check (`drop_rejected`), whichever comes first.
        self._rejected: OrderedDict[str, None] = OrderedDict()
        # Told the ids of every grant this provider drops, so open sessions of them end (`revocation.py`).
        self.on_dropped: list[Callable[[list[str]], Awaitable[None]]] = []

    # --- clients -------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if MetadataDocuments.is_document_id(client_id):
            return await self.documents.get(client_id)
        return self.registered.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registered.register(client_info)

    # --- authorization -------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and params.resource.rstrip("/") != self.options.resource:
            raise AuthorizeError("invalid_target", f"this server issues tokens for {self.options.resource} only")
        scopes = tuple(params.scopes or ALL_SCOPES)
        if not set(scopes) <= set(ALL_SCOPES):
            raise AuthorizeError("invalid_scope", f"scopes are {', '.join(ALL_SCOPES)}")
        request = SignInRequest(
            client_id=client.client_id,
            client_name=client.client_name,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_explicit=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            state=params.state,
            scopes=scopes,
            resource=self.options.resource,
            expires_at=self.store.now() + self.options.sign_in_minutes * 60,
        )
        sealed = self.keys.seal(json.dumps(dataclasses.asdict(request)).encode(), _SIGN_IN_CONTEXT)
        return f"{self.options.issuer}{SIGN_IN_PATH}?{urlencode({'request': sealed})}"

    def open_sign_in(self, sealed: str) -> SignInRequest | None:
        """The sign-in request sealed in the page's URL; None when forged, tampered with or expired."""
        raw = self.keys.open(sealed, _SIGN_IN_CONTEXT) if len(sealed) < 16 * 1024 else None
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        data["scopes"] = tuple(data["scopes"])
        request = SignInRequest(**data)
        return request if request.expires_at > self.store.now() else None

    async def issue_code(self, request: SignInRequest, pat: str, fingerprint: str, scopes: tuple[str, ...]) -> str:
        """After the page checked the PAT: a single-use code for the client's redirect."""
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        grant_id = uuid.uuid4().hex
        issued = IssuedCode(
            grant_id=grant_id,
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            redirect_uri_explicit=request.redirect_uri_explicit,
            code_challenge=request.code_challenge,
            scopes=scopes,
            resource=request.resource,
            fingerprint=fingerprint,
            sealed_pat=self.keys.seal(pat.encode(), grant_id.encode()),
            expires_at=self.store.now() + self.options.code_seconds,
        )
        await self.store.save_code(secret_hash(code), issued)
        return code

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GrantCode | None:
        if not authorization_code.startswith(CODE_PREFIX):
            return None
        issued = await self.store.take_code(secret_hash(authorization_code))  # single use, whatever happens next
        if issued is None or issued.client_id != client.client_id:
            return None
        return GrantCode(
            code=authorization_code,
            scopes=list(issued.scopes),
            expires_at=issued.expires_at,
            client_id=issued.client_id,
            code_challenge=issued.code_challenge,
            redirect_uri=issued.redirect_uri,
            redirect_uri_provided_explicitly=issued.redirect_uri_explicit,
            resource=issued.resource,
            subject=issued.fingerprint,
            grant_id=issued.grant_id,
            fingerprint=issued.fingerprint,
            sealed_pat=issued.sealed_pat,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: GrantCode
    ) -> OAuthToken:
        now = self.store.now()
        grant = Grant(
            grant_id=authorization_code.grant_id,
            client_id=client.client_id,
            fingerprint=authorization_code.fingerprint,
            sealed_pat=authorization_code.sealed_pat,
            scopes=tuple(authorization_code.scopes),
            resource=authorization_code.resource or self.options.resource,
            expires_at=now + self.options.grant_days * 86400,
            client_name=client.client_name,
            redirect_uri=str(authorization_code.redirect_uri),
            created_at=now,
            refreshed_at=now,
        )
        await self.store.save_grant(grant)
        logger.info("OAuth grant issued to client %s (scopes %s)", _shown(client), " ".join(grant.scopes))
        return await self._issue(grant, grant.scopes)

    # --- refresh -------------------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GrantRefreshToken | None:
        found = await self._live_token(refresh_token, REFRESH_PREFIX, "refresh")
        if found is None or found[0].client_id != client.client_id:
            return None
        token, _ = found
        return GrantRefreshToken(
            token=refresh_token, client_id=token.client_id, scopes=list(token.scopes),
            expires_at=int(token.expires_at), resource=token.resource, grant_id=token.grant_id,
        )  # fmt: skip

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GrantRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        try:
            token = await self._refresh(client, refresh_token, scopes)
        except TokenError:
            hooks.recorder().oauth_refresh("invalid")  # docs/operations.md
            raise
        except Exception:  # the grant store failing, say: counted, then raised unchanged
            hooks.recorder().oauth_refresh("failed")
            raise
        hooks.recorder().oauth_refresh("ok")
        return token

    async def _refresh(
        self, client: OAuthClientInformationFull, refresh_token: GrantRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        spent = await self.store.spend_refresh(secret_hash(refresh_token.token))
        if spent is None:
            raise TokenError("invalid_grant", "refresh token does not exist")
        if not spent[1]:
            await self._drop(refresh_token.grant_id)
            logger.warning("a used refresh token was presented again: grant of client %s revoked", _shown(client))
            raise TokenError("invalid_grant", "refresh token was already used: the grant is revoked, sign in again")
        grant = await self.store.grant(refresh_token.grant_id)
        if grant is None:
            raise TokenError("invalid_grant", "the grant is revoked or expired: sign in again")
        now = self.store.now()
        grant = dataclasses.replace(grant, expires_at=now + self.options.grant_days * 86400, refreshed_at=now)
        await self.store.save_grant(grant)
        return await self._issue(grant, tuple(scopes))

    # --- access --------------------------------------------------------------------------------

    async def load_access_token(self, token: str) -> GrantAccessToken | None:
        found = await self._live_token(token, ACCESS_PREFIX, "access")
        if found is None:
            return None
        issued, grant = found
        return GrantAccessToken(
            token=token, client_id=issued.client_id, scopes=list(issued.scopes), expires_at=int(issued.expires_at),
            resource=issued.resource, subject=grant.fingerprint, grant_id=issued.grant_id,
        )  # fmt: skip

    async def resolve(self, token: str) -> Resolved | None:
        """The identity an access token acts as (see the module docstring); None: answer with the challenge."""
        found = await self._live_token(token, ACCESS_PREFIX, "access")
        if found is None:
            return None
        issued, grant = found
        if issued.resource.rstrip("/") != self.options.resource:
            return None  # issued for another resource (audience)
        if grant.fingerprint in self._rejected:
            del self._rejected[grant.fingerprint]
            await self._drop_grants_of(grant.fingerprint)
            return None
        pat = self.keys.open(grant.sealed_pat, grant.grant_id.encode())
        if pat is None:  # sealed under a key this server no longer has
            await self._drop(grant.grant_id)
            return None
        return Resolved(pat=pat.decode(), fingerprint=grant.fingerprint, scopes=issued.scopes, grant_id=grant.grant_id)

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: IdentityAssertionParams
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "this server issues tokens only for a signed-in user")

    async def revoke_token(self, token: GrantAccessToken | GrantRefreshToken) -> None:
        await self._drop(token.grant_id)
        logger.info("OAuth grant revoked by its client")

    async def drop_rejected(self) -> None:
        """Drop the grants of every PAT Mogplex refused since the last call (open streams of them end too)."""
        pending = list(self._rejected)  # those arriving meanwhile wait for the next call
        for fingerprint in pending:
            await self._drop_grants_of(fingerprint)  # the store failing leaves the rest for the next call
            self._rejected.pop(fingerprint, None)

    async def _drop(self, grant_id: str) -> None:
        await self.store.drop_grant(grant_id)
        await self._tell([grant_id])

    async def _drop_grants_of(self, fingerprint: str) -> None:
        dropped = await self.store.drop_grants_of(fingerprint)
        if dropped:
            logger.warning("Mogplex refused a signed-in token (401): %d grant(s) dropped, sign-in needed", len(dropped))
            await self._tell(dropped)

    async def _tell(self, grant_ids: list[str]) -> None:
        for listener in self.on_dropped:
            await listener(grant_ids)

    def pat_rejected(self, fingerprint: str) -> None:
        """Mogplex answered 401 for this PAT: its grants go at their next use (the client then signs in again)."""
        self._rejected[fingerprint] = None
        self._rejected.move_to_end(fingerprint)
        while len(self._rejected) > _MAX_REMEMBERED_REJECTIONS:
            self._rejected.popitem(last=False)

    async def _live_token(self, token: str, prefix: str, kind: str) -> tuple[IssuedToken, Grant] | None:
        if not token.startswith(prefix) or len(token) > 128:
            return None
        issued = await self.store.token(secret_hash(token))
        if issued is None or issued.kind != kind:
            return None
        grant = await self.store.grant(issued.grant_id)
        return (issued, grant) if grant is not None else None

    async def _issue(self, grant: Grant, scopes: tuple[str, ...]) -> OAuthToken:
        now = self.store.now()
        access, refresh = ACCESS_PREFIX + secrets.token_urlsafe(32), REFRESH_PREFIX + secrets.token_urlsafe(32)
        lifetime = self.options.access_token_minutes * 60
        pairs: tuple[tuple[TokenKind, str, float], ...] = (
            ("access", access, now + lifetime),
            ("refresh", refresh, grant.expires_at),
        )
        for kind, token, expires_at in pairs:
            issued = IssuedToken(
                kind=kind, grant_id=grant.grant_id, client_id=grant.client_id, scopes=scopes,
                resource=grant.resource, expires_at=expires_at,
            )  # fmt: skip
            await self.store.save_token(secret_hash(token), issued)
        return OAuthToken(
            access_token=access, expires_in=max(1, int(lifetime)), scope=" ".join(scopes), refresh_token=refresh
        )


def _shown(client: OAuthClientInformationFull) -> str:
    return repr((client.client_name or "unnamed")[:60])
