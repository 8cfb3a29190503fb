"""OAuth grants behind the store seam: what an authorization code, a grant and an issued token hold, and the
`GrantStore` protocol both backends implement (`runs/local/grants.py` on SQLite, `runs/redis/grants.py`).

Nothing here is a secret in clear: codes and tokens are stored under their SHA-256 (`secret_hash`), a grant
keeps its user's PAT only sealed (AES-GCM, sealed and opened by the front door, never by the store), and the
user is named by the PAT's fingerprint, as everywhere else in the run-supervision state. Every record carries
its own expiry; a backend forgets it then (and never returns it after).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Collection
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol

TokenKind = Literal["access", "refresh"]


def secret_hash(secret: str) -> str:
    """The key a code or token is stored under: its SHA-256 (they carry 256 random bits, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedCode:
    """An authorization code between the sign-in page and `/token`: single use, short-lived.

    `grant_id` is chosen at sign-in (the sealed PAT is bound to it) and becomes the grant's id on exchange.
    """

    grant_id: str
    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    scopes: tuple[str, ...]
    resource: str
    fingerprint: str
    sealed_pat: str
    expires_at: float


@dataclass(frozen=True)
class Grant:
    """One user's consent to one client: whose PAT (sealed), which scopes, for which resource, until when.

    The last four fields are for operators (`mogplex-mcp oauth grants list`): the client's name as it
    registered (its own words: shown cleaned, never trusted), where its codes went, when the user signed in and
    when the client last refreshed. Grants issued before they existed read them as None.
    """

    grant_id: str
    client_id: str
    fingerprint: str
    sealed_pat: str
    scopes: tuple[str, ...]
    resource: str
    expires_at: float
    client_name: str | None = None
    redirect_uri: str | None = None
    created_at: float | None = None
    refreshed_at: float | None = None


@dataclass(frozen=True)
class IssuedToken:
    """An access or refresh token of a grant (stored under its hash). It is valid only while its grant is."""

    kind: TokenKind
    grant_id: str
    client_id: str
    scopes: tuple[str, ...]
    resource: str
    expires_at: float


class GrantStore(Protocol):
    """Codes, grants and tokens of the OAuth front door; every method raises StoreUnavailableError when the
    backend cannot answer. Times are seconds on the backend's clock (`now()`)."""

    def now(self) -> float:
        """The clock expiries are measured against."""
        ...

    async def save_code(self, code_hash: str, code: IssuedCode) -> None:
        """Keep a code until it expires or is taken."""
        ...

    async def take_code(self, code_hash: str) -> IssuedCode | None:
        """Return and delete a code atomically: of two concurrent takers, at most one gets it."""
        ...

    async def save_grant(self, grant: Grant) -> None:
        """Create or replace (e.g. extend) a grant."""
        ...

    async def grant(self, grant_id: str) -> Grant | None:
        """A live grant, or None (unknown, dropped, expired)."""
        ...

    async def drop_grant(self, grant_id: str) -> bool:
        """Drop a grant (its tokens die with it); True when it existed."""
        ...

    async def drop_grants_of(self, fingerprint: str) -> list[str]:
        """Drop every grant of one PAT (upstream refused it, or its owner asked); the ids of those dropped."""
        ...

    async def live_grant_ids(self, grant_ids: Collection[str]) -> set[str]:
        """Which of these grants are still live (one round trip per few hundred ids): open sessions are
        checked against it, so a grant revoked elsewhere (another replica, the operator) ends them here too."""
        ...

    def grants(self) -> AsyncIterator[Grant]:
        """Every live grant, in no particular order, a batch at a time (the operator's list and revoke)."""
        ...

    async def save_token(self, token_hash: str, token: IssuedToken) -> None:
        """Keep an issued token until it expires."""
        ...

    async def token(self, token_hash: str) -> IssuedToken | None:
        """A live token (its grant may still be gone: callers check the grant too)."""
        ...

    async def spend_refresh(self, token_hash: str) -> tuple[IssuedToken, bool] | None:
        """Mark a refresh token used, atomically; the token and whether this was its first use.

        A used refresh token stays known until it expires, so that a replay is recognised (and the grant
        revoked by the caller) instead of looking like an unknown token.
        """
        ...


def dump(record: IssuedCode | Grant | IssuedToken) -> str:
    return json.dumps(asdict(record), separators=(",", ":"))


def load_code(text: str) -> IssuedCode:
    return IssuedCode(**_with_tuple(json.loads(text)))


_GRANT_FIELDS = frozenset(field.name for field in fields(Grant))


def load_grant(text: str) -> Grant:
    data = _with_tuple(json.loads(text))
    return Grant(**{name: value for name, value in data.items() if name in _GRANT_FIELDS})


def load_token(text: str) -> IssuedToken:
    return IssuedToken(**_with_tuple(json.loads(text)))


def _with_tuple(data: dict[str, Any]) -> dict[str, Any]:
    data["scopes"] = tuple(data.get("scopes", ()))
    return data
