"""Limits of the OAuth front door: its settings (each with a flag and a line in docs/oauth.md) and the rate
limiter that keeps unauthenticated callers cheap.

`RateLimiter` admits at most `per_address` events per address and `total` events overall in any sliding
minute. What it remembers is bounded: at most `max_addresses` addresses (the least recently seen forgotten
first), each with at most `per_address` timestamps. Limits are per process: N replicas admit N times `total`.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mogplex_mcp.config import ConfigError

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


@dataclass(frozen=True)
class OAuthOptions:
    """The front door's settings. `public_url` is the origin clients use (issuer; the resource is `…/mcp`)."""

    public_url: str
    access_token_minutes: float = 60.0
    grant_days: float = 30.0
    code_seconds: float = 120.0
    sign_in_minutes: float = 10.0
    # Sign-in submissions whose PAT is being checked with Mogplex at once (more get "busy, try again"), and
    # how long one check may take.
    pat_checks_in_flight: int = 8
    pat_check_seconds: float = 10.0
    sign_ins_per_minute: int = 10
    sign_ins_per_minute_total: int = 120
    registrations_per_minute: int = 10
    registrations_per_minute_total: int = 100
    # How often open sessions' grants are checked against the store (revoked on another replica or by the
    # operator's command): the longest such a session's streams outlive their grant.
    revocation_check_seconds: float = 5.0
    metadata_fetch_seconds: float = 5.0
    metadata_max_bytes: int = 16 * 1024
    # Client metadata documents fetched at once, and a minute, by the whole server: callers choose the URLs,
    # so outbound work stays bounded however many addresses they come from (a cached document costs nothing).
    metadata_fetches_in_flight: int = 4
    metadata_fetches_per_minute: int = 60
    # Longest a request waits for the SQLite grant store while another process holds it (then 503, retry).
    store_wait_seconds: float = 2.0
    # Client metadata documents must be https on a public address; tests (only) may serve them on loopback,
    # and trust an extra CA for them (a private CA, or a test's self-signed certificate).
    allow_loopback_metadata: bool = False
    metadata_ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigError(f"--public-url must be an absolute https URL, got {self.public_url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError("--public-url must be an origin (https://host[:port]) without a path")
        host = (parts.hostname or "").lower()
        if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
            raise ConfigError("--public-url must use https (plain http is allowed for loopback only)")

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def resource(self) -> str:
        return self.issuer + "/mcp"


class RateLimiter:
    """Sliding-minute admission per address and overall (see the module docstring)."""

    def __init__(
        self,
        per_address: int,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.per_address = per_address
        self.total = total
        self._clock = clock
        self._max_addresses = max_addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()
        self.refused = 0

    def admit(self, address: str) -> bool:
        """Count one event for `address`; False (nothing counted) when either limit is reached."""
        now = self._clock()
        cutoff = now - WINDOW_SECONDS
        _trim(self._all, cutoff)
        mine = self._seen.get(address)
        if mine is not None:
            _trim(mine, cutoff)
            self._seen.move_to_end(address)
        if len(self._all) >= self.total or (mine is not None and len(mine) >= self.per_address):
            self.refused += 1
            return False
        if mine is None:
            mine = self._seen[address] = deque()
            while len(self._seen) > self._max_addresses:
                self._seen.popitem(last=False)
        mine.append(now)
        self._all.append(now)
        return True

    def __len__(self) -> int:
        """Addresses remembered (bounded by `max_addresses`)."""
        return len(self._seen)


def _trim(stamps: deque[float], cutoff: float) -> None:
    while stamps and stamps[0] <= cutoff:
        stamps.popleft()
