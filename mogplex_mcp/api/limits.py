"""Fair shares of the upstream: per-token request and stream limits, and a short memory of rejected tokens.

One `UpstreamGate` serves every client of a process (the server makes one; a lone `MogplexClient`
has none). Each token fingerprint gets at most `per_token` requests in flight and `streams_per_token`
open event streams, so one caller can neither fill the request pool nor the stream budget of another.
Tokens upstream has never accepted share one token's worth of requests between them, so a flood of
made-up bearers waits behind itself, not in front of real users. After a 401 the fingerprint is
refused locally for `rejected_seconds`: an unknown token fails fast, without another request.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from mogplex_mcp.api.errors import AuthenticationError, MogplexError
from mogplex_mcp.config import TOKEN_ENV, Settings
from mogplex_mcp.telemetry import hooks

# Fingerprints remembered at most, per table; the least recently used idle entries go first.
MAX_TRACKED_TOKENS = 10_000


def token_fingerprint(token: str) -> str:
    """Identify a token without keeping it: the first 32 hex characters of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class StreamBudgetExhaustedError(MogplexError):
    """No event-stream slot is free (for this token, or at all): follow by polling for now."""


@dataclass(frozen=True)
class GateLimits:
    """The numbers an `UpstreamGate` enforces (from Settings: see docs/http.md "Limits")."""

    per_token: int = 4
    streams: int = 100
    streams_per_token: int = 25
    rejected_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GateLimits:
        return cls(
            per_token=settings.upstream_per_token,
            streams=settings.upstream_streams,
            streams_per_token=settings.upstream_streams_per_token,
            rejected_seconds=settings.rejected_token_seconds,
        )


class _Shares:
    """One semaphore per fingerprint, created on demand, the table bounded by dropping idle ones.

    Semaphores, not CapacityLimiters: a slot belongs to the call, not to a task (one task may hold two).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: OrderedDict[str, anyio.Semaphore] = OrderedDict()

    def of(self, fingerprint: str) -> anyio.Semaphore:
        slots = self._slots.get(fingerprint)
        if slots is None:
            slots = anyio.Semaphore(self._size, max_value=self._size)
            self._slots[fingerprint] = slots
            self._trim()
        self._slots.move_to_end(fingerprint)
        return slots

    def __len__(self) -> int:
        return len(self._slots)

    def in_use(self, fingerprint: str) -> int:
        slots = self._slots.get(fingerprint)
        return 0 if slots is None else self._size - slots.value

    def _trim(self) -> None:
        if len(self._slots) <= MAX_TRACKED_TOKENS:
            return
        for key in [key for key, slots in self._slots.items() if slots.value == self._size]:
            del self._slots[key]
            if len(self._slots) <= MAX_TRACKED_TOKENS // 2:
                return


class UpstreamGate:
    """Admission to the upstream for every token of one process (see the module docstring)."""

    def __init__(self, limits: GateLimits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or GateLimits()
        self._clock = clock
        self._requests = _Shares(self.limits.per_token)
        self._unverified = anyio.Semaphore(self.limits.per_token, max_value=self.limits.per_token)
        self._stream_shares = _Shares(self.limits.streams_per_token)
        self._streams = anyio.Semaphore(self.limits.streams, max_value=self.limits.streams)
        self._verified: OrderedDict[str, None] = OrderedDict()
        self._rejected: OrderedDict[str, float] = OrderedDict()  # fingerprint -> when upstream said 401
        # Told each fingerprint upstream answered 401 for (the OAuth front door drops that PAT's grants).
        self.on_rejected: list[Callable[[str], None]] = []
        self.requests_in_flight = 0
        self.streams_open = 0

    # --- rejected tokens -----------------------------------------------------------------------

    def check_rejected(self, token: str, what: str) -> None:
        """Raise at once if upstream refused this token within the last `rejected_seconds`."""
        fingerprint = token_fingerprint(token)
        since = self._rejected.get(fingerprint)
        if since is None:
            return
        age = self._clock() - since
        if age >= self.limits.rejected_seconds:
            del self._rejected[fingerprint]
            return
        wait = math.ceil(self.limits.rejected_seconds - age)
        hooks.recorder().upstream_token_refused()
        raise AuthenticationError(
            f"{what}: Mogplex rejected this token (HTTP 401) {math.floor(age)} s ago; it is not sent again for "
            f"{wait} s. Check {TOKEN_ENV} or the Authorization bearer. Nothing was sent.",
            status=401,
            code="UNAUTHORIZED",
        )

    def rejected(self, token: str) -> None:
        """Upstream said 401 for this token: refuse it locally for a while."""
        fingerprint = token_fingerprint(token)
        self._verified.pop(fingerprint, None)
        for listener in self.on_rejected:
            listener(fingerprint)
        if self.limits.rejected_seconds <= 0:
            return
        self._rejected[fingerprint] = self._clock()
        self._rejected.move_to_end(fingerprint)
        while len(self._rejected) > MAX_TRACKED_TOKENS:
            self._rejected.popitem(last=False)

    def accepted(self, token: str) -> None:
        """Upstream answered this token as a known user (any status but 401, a redirect or a 5xx)."""
        fingerprint = token_fingerprint(token)
        self._rejected.pop(fingerprint, None)
        self._verified[fingerprint] = None
        self._verified.move_to_end(fingerprint)
        while len(self._verified) > MAX_TRACKED_TOKENS:
            self._verified.popitem(last=False)

    def verified(self, token: str) -> bool:
        return token_fingerprint(token) in self._verified

    # --- shares --------------------------------------------------------------------------------

    @asynccontextmanager
    async def request_slot(self, token: str) -> AsyncIterator[None]:
        """Hold one of the token's request slots (and, for a token never accepted, one of theirs)."""
        fingerprint = token_fingerprint(token)
        async with self._requests.of(fingerprint):
            if fingerprint in self._verified:
                async with self._counted_request():
                    yield
            else:
                async with self._unverified, self._counted_request():
                    yield

    @asynccontextmanager
    async def _counted_request(self) -> AsyncIterator[None]:
        self.requests_in_flight += 1
        try:
            yield
        finally:
            self.requests_in_flight -= 1

    @asynccontextmanager
    async def stream_slot(self, token: str) -> AsyncIterator[None]:
        """Hold an event-stream slot, or raise StreamBudgetExhaustedError at once (never queue for one)."""
        share = self._stream_shares.of(token_fingerprint(token))
        try:
            share.acquire_nowait()
        except anyio.WouldBlock:
            raise StreamBudgetExhaustedError(
                f"this token already holds {self.limits.streams_per_token} event streams"
            ) from None
        try:
            try:
                self._streams.acquire_nowait()
            except anyio.WouldBlock:
                raise StreamBudgetExhaustedError(f"all {self.limits.streams} event streams are open") from None
            self.streams_open += 1
            try:
                yield
            finally:
                self.streams_open -= 1
                self._streams.release()
        finally:
            share.release()

    @property
    def tracked(self) -> int:
        """Fingerprints held in the largest of the gate's tables (each bounded by MAX_TRACKED_TOKENS)."""
        return max(len(self._requests), len(self._stream_shares), len(self._verified), len(self._rejected))

    def requests_of(self, token: str) -> int:
        """The token's requests in flight right now."""
        return self._requests.in_use(token_fingerprint(token))

    def streams_of(self, token: str) -> int:
        """The token's open event streams right now."""
        return self._stream_shares.in_use(token_fingerprint(token))
