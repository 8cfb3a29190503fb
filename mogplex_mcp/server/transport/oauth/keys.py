"""The front door's key: AES-GCM sealing of PATs and sign-in requests, HMAC for client ids and CSRF tokens.

Where the key comes from: `MOGPLEX_MCP_OAUTH_KEY` (32 random bytes in base64 or base64url, e.g.
`openssl rand -base64 32`; a comma-separated list to rotate: the first seals, every one opens), else the file
`oauth-key` in the state dir, created 0600 on first start and refused when anyone but its owner may read it.
With Redis, replicas must share the key, so the env var is required there (a per-machine file would make
every replica's grants unreadable to the others).

Sealed values are bound to what they belong to (AES-GCM associated data): a PAT sealed for one grant does
not open as another's, and a sealed sign-in request does not open as a PAT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mogplex_mcp.config import ConfigError

KEY_ENV = "MOGPLEX_MCP_OAUTH_KEY"
KEY_FILE = "oauth-key"
KEY_BYTES = 32
_NONCE_BYTES = 12


class Keys:
    """The current key (seals, signs) and older ones (still open and verify during a rotation)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(key) != KEY_BYTES for key in keys):
            raise ConfigError(f"{KEY_ENV} must hold base64url-encoded {KEY_BYTES}-byte keys")
        self._aead = [AESGCM(key) for key in keys]
        self._mac_keys = [hashlib.sha256(b"mogplex-mcp oauth mac\0" + key).digest() for key in keys]

    def seal(self, plaintext: bytes, context: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _b64(nonce + self._aead[0].encrypt(nonce, plaintext, context))

    def open(self, sealed: str, context: bytes) -> bytes | None:
        """The plaintext, or None when it was not sealed by one of these keys for this context."""
        try:
            raw = _unb64(sealed)
        except ValueError:
            return None
        nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for aead in self._aead:
            try:
                return aead.decrypt(nonce, body, context)
            except (InvalidTag, ValueError):
                continue
        return None

    def opening_key(self, sealed: str, context: bytes) -> int | None:
        """Which key opens `sealed` (0: the current one, more: an older one during a rotation), None: none."""
        try:
            raw = _unb64(sealed)
        except ValueError:
            return None
        nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for index, aead in enumerate(self._aead):
            try:
                aead.decrypt(nonce, body, context)  # the plaintext is dropped at once: only the tag matters
            except (InvalidTag, ValueError):
                continue
            return index
        return None

    def sign(self, message: bytes) -> str:
        return _b64(hmac.digest(self._mac_keys[0], message, "sha256"))

    def verify(self, message: bytes, signature: str) -> bool:
        expected = signature.encode()
        return any(
            hmac.compare_digest(_b64(hmac.digest(key, message, "sha256")).encode(), expected) for key in self._mac_keys
        )


def load_keys(state_dir: Path, *, shared: bool, env: Mapping[str, str] | None = None) -> Keys:
    """The keys from KEY_ENV, else the state dir's key file (made on first use); see the module docstring."""
    values = os.environ if env is None else env
    configured = (values.get(KEY_ENV) or "").strip()
    if configured:
        try:
            return Keys([_unb64(part.strip()) for part in configured.split(",") if part.strip()])
        except ValueError:
            raise ConfigError(f"{KEY_ENV} is not base64: make one with `openssl rand -base64 32`") from None
    if shared:
        raise ConfigError(
            f"OAuth with Redis needs one key shared by every replica: set {KEY_ENV} on each (make one with "
            "`openssl rand -base64 32`). Without it a grant issued by one replica could not be read by another."
        )
    return Keys([_key_file(state_dir / KEY_FILE)])


def existing_keys(state_dir: Path, *, shared: bool, env: Mapping[str, str] | None = None) -> Keys | None:
    """The keys `serve` would use, for the operator's commands; never creates a key file. None when there is
    none: the variable unset and (with Redis, where only the variable counts) no file in the state dir."""
    values = os.environ if env is None else env
    if (values.get(KEY_ENV) or "").strip() or (not shared and (state_dir / KEY_FILE).exists()):
        return load_keys(state_dir, shared=shared, env=values)
    return None


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} may be read by other users (mode {oct(mode & 0o777)}): chmod 600 it") from None
        try:
            return _unb64(path.read_text(encoding="ascii").strip())
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{path} does not hold a key: delete it (every grant is then lost)") from None
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(_b64(key) + "\n")
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
