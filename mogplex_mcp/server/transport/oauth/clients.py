"""Who the OAuth clients are, without keeping anything for an unauthenticated caller.

- **Dynamic registration (RFC 7591)** stores nothing: the client id *is* the registration (the few fields
  we use, base64url JSON) plus an HMAC under the server key, and a confidential client's secret is derived from
  its id. A flood of registrations costs CPU (rate-limited), never storage; rotating the key retires them.
- **Client ID metadata documents** (the spec's preferred way): the client id is an https URL whose JSON
  document names the client. It is fetched SSRF-safely: https only (loopback http in tests), every resolved
  address public, the connection pinned to the checked address (the TLS name still verified), no redirects,
  at most `metadata_max_bytes` within `metadata_fetch_seconds`, `metadata_fetches_in_flight` at a time and at
  most `metadata_fetches_per_minute` for the whole server, cached briefly (a bounded number), failures too.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
from mcp.server.auth.provider import RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from mogplex_mcp.server.transport.oauth.keys import Keys, _b64, _unb64
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions, RateLimiter
from mogplex_mcp.server.transport.oauth.scopes import ALL_SCOPES

ID_PREFIX = "mcpc1."
MAX_REDIRECT_URIS = 5
MAX_URI_CHARS = 512
MAX_NAME_CHARS = 100
_KEPT = ("redirect_uris", "client_name", "token_endpoint_auth_method", "grant_types", "response_types", "scope")
_FORBIDDEN_SCHEMES = {"javascript", "data", "file", "vbscript", "blob", "about"}
_CACHE_SIZE = 256
_CACHE_SECONDS = 300.0
_FAILURE_CACHE_SECONDS = 60.0
PUBLIC_CLIENT = "none"


class RegisteredClients:
    """Stateless client ids for dynamic registration (see the module docstring)."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def register(self, info: OAuthClientInformationFull) -> None:
        """Check what was asked and rewrite `info` in place: its id encodes it, its secret derives from it."""
        uris = [str(uri) for uri in info.redirect_uris or []]
        if not uris or len(uris) > MAX_REDIRECT_URIS:
            raise RegistrationError("invalid_redirect_uri", f"give 1 to {MAX_REDIRECT_URIS} redirect_uris")
        for uri in uris:
            if problem := redirect_uri_problem(uri):
                raise RegistrationError("invalid_redirect_uri", problem)
        if info.client_name is not None and len(info.client_name) > MAX_NAME_CHARS:
            raise RegistrationError("invalid_client_metadata", f"client_name is longer than {MAX_NAME_CHARS}")
        record = {name: getattr(info, name) for name in _KEPT}
        record["redirect_uris"] = uris
        record["iat"] = int(time.time())
        payload = _b64(json.dumps(record, separators=(",", ":")).encode())
        info.client_id = f"{ID_PREFIX}{payload}.{self._keys.sign(payload.encode())}"
        info.client_id_issued_at = record["iat"]
        info.client_secret = self._secret(info.client_id) if info.token_endpoint_auth_method != PUBLIC_CLIENT else None
        info.client_secret_expires_at = 0 if info.client_secret else None

    def get(self, client_id: str) -> OAuthClientInformationFull | None:
        if not client_id.startswith(ID_PREFIX) or len(client_id) > 8 * 1024:
            return None
        payload, _, signature = client_id.removeprefix(ID_PREFIX).partition(".")
        if not self._keys.verify(payload.encode(), signature):
            return None
        try:
            record: dict[str, Any] = json.loads(_unb64(payload))
            fields = {k: v for k, v in record.items() if k in _KEPT}
            info = OAuthClientInformationFull.model_validate(
                {**fields, "client_id": client_id, "client_id_issued_at": record.get("iat")}
            )
        except (ValueError, ValidationError):
            return None
        if info.token_endpoint_auth_method != PUBLIC_CLIENT:
            info.client_secret = self._secret(client_id)
        return info

    def _secret(self, client_id: str) -> str:
        return self._keys.sign(b"client-secret\0" + client_id.encode())


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` may not be a redirect URI (None: it may): https, loopback http, or an app's own scheme."""
    if len(uri) > MAX_URI_CHARS:
        return f"a redirect_uri is longer than {MAX_URI_CHARS} characters"
    parts = urlsplit(uri)
    if parts.fragment:
        return "a redirect_uri must not have a fragment"
    scheme = parts.scheme.lower()
    if scheme in _FORBIDDEN_SCHEMES or not scheme:
        return f"redirect_uri scheme {scheme!r} is not allowed"
    if scheme == "http" and (parts.hostname or "").lower() not in ("localhost", "127.0.0.1", "::1"):
        return "an http redirect_uri must be on loopback (localhost, 127.0.0.1, [::1]); use https"
    return None


class MetadataDocuments:
    """Client ID metadata documents, fetched SSRF-safely and cached (see the module docstring)."""

    def __init__(self, options: OAuthOptions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._options = options
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, OAuthClientInformationFull | None]] = OrderedDict()
        self._parallel = anyio.Semaphore(options.metadata_fetches_in_flight)
        per_minute = options.metadata_fetches_per_minute
        self._budget = RateLimiter(per_address=per_minute, total=per_minute, clock=clock)
        self.fetches = 0

    @staticmethod
    def is_document_id(client_id: str) -> bool:
        return client_id.startswith(("https://", "http://"))

    async def get(self, client_id: str) -> OAuthClientInformationFull | None:
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        info = await self._fetch(client_id)
        self._cache[client_id] = (self._clock() + (_CACHE_SECONDS if info else _FAILURE_CACHE_SECONDS), info)
        self._cache.move_to_end(client_id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return info

    async def _fetch(self, url: str) -> OAuthClientInformationFull | None:
        if len(url) > MAX_URI_CHARS:
            return None
        if self._parallel.value == 0 or not self._budget.admit("all"):
            return None  # busy: refuse rather than queue unauthenticated work
        async with self._parallel:
            self.fetches += 1
            try:
                with anyio.fail_after(self._options.metadata_fetch_seconds):
                    body = await self._download(url)
            except (TimeoutError, OSError, httpx2.HTTPError, _Refused):
                return None
        return _client_from_document(url, body)

    async def _download(self, url: str) -> bytes:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback_ok = self._options.allow_loopback_metadata
        if parts.scheme != "https" and not (loopback_ok and parts.scheme == "http"):
            raise _Refused
        if parts.username or parts.password or parts.fragment or not parts.path.strip("/"):
            raise _Refused
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await _checked_address(host, port, loopback_ok=loopback_ok)
        shown = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((parts.scheme, f"{shown}:{port}", parts.path, parts.query, ""))
        limit = self._options.metadata_max_bytes
        verify: ssl.SSLContext | bool = True
        if self._options.metadata_ca_file:
            verify = ssl.create_default_context(cafile=self._options.metadata_ca_file)
        async with httpx2.AsyncClient(follow_redirects=False, trust_env=False, verify=verify) as http:
            request = http.build_request(
                "GET", pinned, headers={"Host": parts.netloc.rpartition("@")[2], "Accept": "application/json"},
                extensions={"sni_hostname": host},
            )  # fmt: skip
            response = await http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    raise _Refused
                declared = response.headers.get("content-length")
                if declared is not None and (not declared.isdigit() or int(declared) > limit):
                    raise _Refused
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise _Refused
                return bytes(body)
            finally:
                await response.aclose()


class _Refused(Exception):
    """The document may not or could not be fetched."""


async def _checked_address(host: str, port: int, *, loopback_ok: bool) -> str:
    """One address of `host`, when every address it resolves to is public (or loopback, where allowed)."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise _Refused from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise _Refused
    for address in addresses:
        if not (address.is_global or (loopback_ok and address.is_loopback)):
            raise _Refused
    return str(addresses[0])


def _client_from_document(url: str, body: bytes) -> OAuthClientInformationFull | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("client_id") != url:
        return None  # a document must name itself: another URL's metadata is not this client's
    method = document.get("token_endpoint_auth_method", PUBLIC_CLIENT)
    if method != PUBLIC_CLIENT:
        return None  # no secret can be shared through a public document
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not 0 < len(uris) <= MAX_REDIRECT_URIS:
        return None
    if any(not isinstance(uri, str) or redirect_uri_problem(uri) for uri in uris):
        return None
    name = document.get("client_name")
    try:
        return OAuthClientInformationFull(
            client_id=url,
            redirect_uris=uris,
            client_name=name[:MAX_NAME_CHARS] if isinstance(name, str) else None,
            token_endpoint_auth_method=PUBLIC_CLIENT,
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=" ".join(ALL_SCOPES),
        )
    except ValidationError:
        return None
