"""Fair shares of the upstream: per-token request and stream limits, and a short memory of rejected tokens.

One `UpstreamGate` serves every client of a process (the server makes one; a lone `MogplexClient`
has none). Each token fingerprint gets at most `per_token` requests in flight and `streams_per_token`
open event streams, so one caller can neither fill the request pool nor the stream budget of another.

Tokens upstream has not accepted (recently: `verified_seconds`) share one token's worth of requests between
them, handed out *in turn* across callers (`FairSlots`: the client address of the MCP request, from
`CALLER`, else the token), so a flood of made-up bearers from one address delays only that address: another
caller's first request waits for at most one turn. An unverified bearer has one request in flight, and a
caller at most `unverified_waiting` requests waiting; past that it is refused at once, before anything is
sent. Which tokens upstream accepted, and when, can outlive the process (`on_accepted`, `load`): after a
restart a known user skips the queue. After a 401 the fingerprint is refused locally for
`rejected_seconds`: an unknown token fails fast, without another request.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import anyio

from mogplex_mcp.api.errors import AuthenticationError, MogplexError
from mogplex_mcp.config import TOKEN_ENV, Settings
from mogplex_mcp.telemetry import hooks

# Fingerprints remembered at most, per table; the least recently used idle entries go first.
MAX_TRACKED_TOKENS = 10_000
# Who is asking, for the fair queue of unverified tokens: the client address of the MCP request being served
# (set by the server for each tool call and resource read); None in background work (followers).
CALLER: ContextVar[str | None] = ContextVar("mogplex_caller", default=None)
# A token not known here is looked up in the shared store at most this often, and for at most this long.
LOOKUP_AGAIN_SECONDS = 30.0
LOOKUP_SECONDS = 0.25
# Calls of one not-yet-accepted bearer that may wait behind its first, per `unverified_waiting`.
BEARER_WAITING_FACTOR = 4
# A verified token's acceptance is written through (`on_accepted`) at most this often.
RECORD_ACCEPTED_EVERY_SECONDS = 60.0


def token_fingerprint(token: str) -> str:
    """Identify a token without keeping it: the first 32 hex characters of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class StreamBudgetExhaustedError(MogplexError):
    """No event-stream slot is free (for this token, or at all): follow by polling for now."""


class UnverifiedBacklogError(MogplexError):
    """Too many requests with not-yet-accepted tokens wait from this caller (or bearer): refused, nothing sent."""


@dataclass(frozen=True)
class GateLimits:
    """The numbers an `UpstreamGate` enforces (from Settings: see docs/http.md "Limits")."""

    per_token: int = 4
    streams: int = 100
    streams_per_token: int = 25
    rejected_seconds: float = 30.0
    # Requests with not-yet-accepted tokens that may wait per caller (client address) before refusals.
    unverified_waiting: int = 16
    # How long an acceptance by upstream counts (for the queue; kept across restarts for as long).
    verified_seconds: float = 7 * 24 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GateLimits:
        return cls(
            per_token=settings.upstream_per_token,
            streams=settings.upstream_streams,
            streams_per_token=settings.upstream_streams_per_token,
            rejected_seconds=settings.rejected_token_seconds,
            unverified_waiting=settings.unverified_waiting,
            verified_seconds=settings.verified_token_seconds,
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


class FairSlots:
    """`size` slots handed out in turn across callers: one caller's backlog never delays another's first request.

    Waiters queue per caller; a freed slot goes to the caller at the head of the rotation, which then moves to
    its end. So with one caller holding hundreds of waiting requests, a newcomer waits for at most one turn.
    """

    def __init__(self, size: int, max_waiting_per_caller: int) -> None:
        self._free = size
        self._max_waiting = max_waiting_per_caller
        self._queues: OrderedDict[str, deque[anyio.Event]] = OrderedDict()

    def waiting(self, caller: str | None = None) -> int:
        if caller is not None:
            return len(self._queues.get(caller, ()))
        return sum(len(queue) for queue in self._queues.values())

    @asynccontextmanager
    async def slot(self, caller: str) -> AsyncIterator[None]:
        if self._free > 0 and not self._queues:
            self._free -= 1
        else:
            queue = self._queues.get(caller)
            if queue is not None and len(queue) >= self._max_waiting:
                raise UnverifiedBacklogError(
                    f"{self._max_waiting} requests with tokens Mogplex has not accepted yet already wait from this "
                    "address: retry shortly. Nothing was sent."
                )
            turn = anyio.Event()
            self._queues.setdefault(caller, deque()).append(turn)
            try:
                await turn.wait()
            except BaseException:
                if turn.is_set():
                    self._hand_on()  # given a slot it will not use: pass it on
                else:
                    self._leave(caller, turn)
                raise
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        if not self._queues:
            self._free += 1
            return
        caller, queue = next(iter(self._queues.items()))
        turn = queue.popleft()
        if queue:
            self._queues.move_to_end(caller)
        else:
            del self._queues[caller]
        turn.set()

    def _leave(self, caller: str, turn: anyio.Event) -> None:
        queue = self._queues.get(caller)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._queues[caller]


class UpstreamGate:
    """Admission to the upstream for every token of one process (see the module docstring)."""

    def __init__(self, limits: GateLimits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or GateLimits()
        self._clock = clock
        self._requests = _Shares(self.limits.per_token)
        self._unverified = FairSlots(self.limits.per_token, self.limits.unverified_waiting)
        self._unverified_shares = _Shares(1)  # one request in flight per not-yet-accepted bearer
        self._stream_shares = _Shares(self.limits.streams_per_token)
        self._streams = anyio.Semaphore(self.limits.streams, max_value=self.limits.streams)
        # fingerprint -> when upstream last accepted it (wall clock: it may come from before a restart)
        self._verified: OrderedDict[str, float] = OrderedDict()
        self._rejected: OrderedDict[str, float] = OrderedDict()  # fingerprint -> when upstream said 401
        # Told each fingerprint upstream answered 401 for (the OAuth front door drops that PAT's grants).
        self.on_rejected: list[Callable[[str], None]] = []
        self.requests_in_flight = 0
        self.streams_open = 0
        # Write-through of acceptances (fingerprint, when) and revocations (fingerprint, None), e.g. to a store.
        self.on_accepted: Callable[[str, float | None], None] | None = None
        # Where to ask about a token this process has not seen accepted (another replica may have): a store.
        self.lookup: Callable[[str], Awaitable[float | None]] | None = None
        self._looked_up: OrderedDict[str, float] = OrderedDict()  # fingerprint -> when asked (and not found)
        self._lookups: dict[str, anyio.Event] = {}  # lookups on their way (only while they are)
        self.wall_clock: Callable[[], float] = time.time

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
        """Upstream said 401 for this token: refuse it locally for a while, and it is no longer verified."""
        fingerprint = token_fingerprint(token)
        if self._verified.pop(fingerprint, None) is not None and self.on_accepted is not None:
            self.on_accepted(fingerprint, None)
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
        now = self.wall_clock()
        before = self._verified.get(fingerprint)
        self._remember(fingerprint, now)
        self._rejected.pop(fingerprint, None)
        if self.on_accepted is not None and (before is None or now - before >= RECORD_ACCEPTED_EVERY_SECONDS):
            self.on_accepted(fingerprint, now)

    def load(self, accepted: dict[str, float]) -> None:
        """Take acceptances recorded earlier (by this process before a restart, or by another replica)."""
        for fingerprint, when in sorted(accepted.items(), key=lambda item: item[1]):
            if fingerprint not in self._rejected and when > self._verified.get(fingerprint, 0.0):
                self._remember(fingerprint, when)

    def _remember(self, fingerprint: str, when: float) -> None:
        self._verified[fingerprint] = when
        self._verified.move_to_end(fingerprint)
        while len(self._verified) > MAX_TRACKED_TOKENS:
            self._verified.popitem(last=False)

    def verified(self, token: str) -> bool:
        return self.verified_fingerprint(token_fingerprint(token))

    async def known_verified(self, fingerprint: str) -> bool:
        """`verified_fingerprint`, else (once per LOOKUP_AGAIN_SECONDS) what `lookup` says: another replica may
        have seen upstream accept the token. A lookup that fails or is slow counts as "not known"."""
        if self.verified_fingerprint(fingerprint):
            return True
        if self.lookup is None or fingerprint in self._rejected:
            return False
        pending = self._lookups.get(fingerprint)
        if pending is not None:  # another call is asking right now: its answer is this one's too
            with anyio.move_on_after(LOOKUP_SECONDS):
                await pending.wait()
            return self.verified_fingerprint(fingerprint)
        asked = self._looked_up.get(fingerprint)
        now = self._clock()
        if asked is not None and now - asked < LOOKUP_AGAIN_SECONDS:
            return False
        self._looked_up[fingerprint] = now
        self._looked_up.move_to_end(fingerprint)
        while len(self._looked_up) > MAX_TRACKED_TOKENS:
            self._looked_up.popitem(last=False)
        when: float | None = None
        done = self._lookups[fingerprint] = anyio.Event()
        try:
            with anyio.move_on_after(LOOKUP_SECONDS):
                try:
                    when = await self.lookup(fingerprint)
                except Exception:  # a store's failure only means "not known here"
                    when = None
            if when is not None:
                self.load({fingerprint: when})
        finally:
            del self._lookups[fingerprint]
            done.set()
        return self.verified_fingerprint(fingerprint)

    def verified_fingerprint(self, fingerprint: str) -> bool:
        """Upstream accepted this token within `verified_seconds`."""
        return self.accepted_within(fingerprint, self.limits.verified_seconds)

    def accepted_within(self, fingerprint: str, seconds: float) -> bool:
        """Upstream accepted this token within the last `seconds` (and has not refused it since)."""
        when = self._verified.get(fingerprint)
        return when is not None and self.wall_clock() - when < seconds

    # --- shares --------------------------------------------------------------------------------

    @asynccontextmanager
    async def request_slot(self, token: str) -> AsyncIterator[None]:
        """Hold one of the token's request slots (and, for a token never accepted, one of theirs)."""
        fingerprint = token_fingerprint(token)
        async with self._requests.of(fingerprint):
            if await self.known_verified(fingerprint):
                async with self._counted_request():
                    yield
                return
            caller = CALLER.get() or f"token:{fingerprint}"
            mine = self._unverified_shares.of(fingerprint)
            # One bearer's own calls queue behind its first (a real user's parallel calls on first contact).
            if mine.statistics().tasks_waiting >= BEARER_WAITING_FACTOR * self.limits.unverified_waiting:
                raise UnverifiedBacklogError(
                    "too many requests with this token wait for Mogplex to accept it: retry shortly. Nothing was sent."
                )
            async with mine:
                if self.verified_fingerprint(fingerprint):  # its request ahead was just accepted: no queue
                    async with self._counted_request():
                        yield
                    return
                async with self._unverified.slot(caller), self._counted_request():
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
