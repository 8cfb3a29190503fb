"""Open MCP sessions per caller: the per-token and global caps, idle expiry, and which session to evict first.

The SDK's session manager keeps the sessions themselves (and binds each to the identity that opened it); this
registry only counts them by token fingerprint, so that one caller's flood evicts that caller's own idle
sessions, and a full server evicts the least valuable idle session instead of refusing everyone (the SDK alone
answers `503 Too many open sessions` to every newcomer until sessions expire).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from mogplex_mcp.runs.fingerprints import token_fingerprint

# An opening request plus `notifications/initialized`: a session that has seen no more was never used.
HANDSHAKE_REQUESTS = 2
# Past the SDK's own idle deadline, an idle session is surely gone there too.
_EXPIRY_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class SessionLimits:
    """How many sessions one token and the whole server may hold, and how long an idle one lives."""

    per_token: int = 32
    total: int = 1000
    idle_seconds: float = 600.0
    # Sessions of tokens upstream has not accepted (yet): per client address, and in all (issue 23).
    unverified_per_client: int = 16
    unverified_total: int = 128

    def __post_init__(self) -> None:
        if min(self.per_token, self.total, self.unverified_per_client, self.unverified_total) < 1:
            raise ValueError("session caps must be at least 1")
        if not self.idle_seconds > 0:
            raise ValueError("the session idle timeout must be positive")


@dataclass
class OpenSession:
    """One session as the gateway sees it: whose it is, where it was opened, how busy it is."""

    session_id: str
    fingerprint: str | None
    host: bytes
    last_active: float
    in_flight: int = 0
    requests: int = 0
    client: str = "local"
    # OAuth grants whose access tokens opened or used this session: it ends when any of them is revoked.
    grants: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    @property
    def used(self) -> bool:
        return self.requests > HANDSHAKE_REQUESTS


class SessionLimitError(Exception):
    """No room for another session, and nothing idle to make room with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SessionRegistry:
    """Sessions by id and by owner; `reserve` admits an opening request or says which sessions to end first."""

    def __init__(self, limits: SessionLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._sessions: dict[str, OpenSession] = {}
        self._opening: Counter[str | None] = Counter()
        self._opening_strangers: Counter[str] = Counter()  # openings by unverified tokens, per client address
        # Whether upstream accepted a token (by fingerprint): the server's gate, once its lifespan runs.
        self.verified: Callable[[str], bool] = lambda fingerprint: False
        # Counters for operators and tests: sessions evicted, openings refused, requests without a bearer.
        self.evicted = 0
        self.refused = 0
        self.unauthenticated = 0

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def get(self, session_id: str) -> OpenSession | None:
        return self._sessions.get(session_id)

    def count_for(self, fingerprint: str | None) -> int:
        self._expire()
        return sum(1 for session in self._sessions.values() if session.fingerprint == fingerprint)

    def count_for_token(self, token: str) -> int:
        return self.count_for(token_fingerprint(token))

    def stranger(self, fingerprint: str | None) -> bool:
        """A token upstream has not accepted (yet); the anonymous local caller is no stranger."""
        return fingerprint is not None and not self.verified(fingerprint)

    def reserve(self, fingerprint: str | None, client: str = "local") -> list[OpenSession]:
        """Admit one opening request for `fingerprint`; return the sessions to terminate to make room.

        The returned sessions are forgotten here already. Raises `SessionLimitError` when every session that
        would have to go is busy (serving a request or holding a GET stream).
        """
        self._expire()
        victims: list[OpenSession] = []
        if self.stranger(fingerprint):
            victims += self._room_for_stranger(client)
        mine = [s for s in self._sessions.values() if s.fingerprint == fingerprint]
        if len(mine) + self._opening[fingerprint] >= self.limits.per_token:
            victim = min((s for s in mine if s.idle and s not in victims), key=lambda s: s.last_active, default=None)
            if victim is None:
                self.refused += 1
                raise SessionLimitError(
                    429,
                    f"This token already has {self.limits.per_token} open MCP sessions, all busy: end one "
                    "(DELETE /mcp with its Mcp-Session-Id) or retry when one finishes.",
                )
            victims.append(victim)
        if len(self._sessions) - len(victims) + sum(self._opening.values()) >= self.limits.total:
            victim = self._least_valuable(exclude=victims)
            if victim is None:
                self.refused += 1
                raise SessionLimitError(
                    503, f"The server holds its maximum of {self.limits.total} MCP sessions, all busy: retry shortly."
                )
            victims.append(victim)
        for victim in victims:
            del self._sessions[victim.session_id]
        self.evicted += len(victims)
        self._opening[fingerprint] += 1
        if self.stranger(fingerprint):
            self._opening_strangers[client] += 1
        return victims

    def _room_for_stranger(self, client: str) -> list[OpenSession]:
        """Sessions of unverified tokens have their own small budget, per client address and in all: past it a
        newcomer of theirs evicts one of their idle sessions, or is refused (never a verified user's session)."""
        strangers = [s for s in self._sessions.values() if self.stranger(s.fingerprint)]
        victims: list[OpenSession] = []
        mine = [s for s in strangers if s.client == client]
        if len(mine) + self._opening_strangers[client] >= self.limits.unverified_per_client:
            victim = min((s for s in mine if s.idle), key=lambda s: s.last_active, default=None)
            if victim is None:
                self.refused += 1
                raise SessionLimitError(
                    429,
                    f"This address already holds {self.limits.unverified_per_client} MCP sessions of tokens "
                    "Mogplex has not accepted yet, all busy: retry when one finishes.",
                )
            victims.append(victim)
        if len(strangers) - len(victims) + sum(self._opening_strangers.values()) >= self.limits.unverified_total:
            victim = min(
                (s for s in strangers if s.idle and s not in victims), key=lambda s: s.last_active, default=None
            )
            if victim is None:
                self.refused += 1
                raise SessionLimitError(
                    503, "The server holds as many sessions of not-yet-accepted tokens as it takes: retry shortly."
                )
            victims.append(victim)
        return victims

    def release(self, fingerprint: str | None, client: str = "local", *, stranger: bool = False) -> None:
        """The opening request reserved by `reserve` has ended (its session, if any, is registered).

        `stranger`: what `stranger(fingerprint)` said when it was reserved.
        """
        self._opening[fingerprint] -= 1
        if self._opening[fingerprint] <= 0:
            del self._opening[fingerprint]
        if stranger and self._opening_strangers[client] > 0:
            self._opening_strangers[client] -= 1
            if self._opening_strangers[client] <= 0:
                del self._opening_strangers[client]

    def opened(self, session_id: str, fingerprint: str | None, host: bytes, client: str = "local") -> OpenSession:
        session = OpenSession(session_id, fingerprint, host, last_active=self._clock(), client=client)
        self._sessions[session_id] = session
        return session

    def closed(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def grants_in_use(self) -> set[str]:
        self._expire()
        return {grant for session in self._sessions.values() for grant in session.grants}

    def take_sessions_of(self, grant_ids: Collection[str]) -> list[OpenSession]:
        """Forget (and return, to be ended) every session that one of these grants opened or used."""
        wanted = set(grant_ids)
        taken = [session for session in self._sessions.values() if session.grants & wanted]
        for session in taken:
            del self._sessions[session.session_id]
        return taken

    def begin(self, session: OpenSession) -> None:
        session.in_flight += 1
        session.requests += 1
        session.last_active = self._clock()

    def end(self, session: OpenSession) -> None:
        session.in_flight -= 1
        session.last_active = self._clock()

    def _least_valuable(self, exclude: list[OpenSession]) -> OpenSession | None:
        """The idle session a full server ends first: never used, from the token holding the most, oldest."""
        held = Counter(session.fingerprint for session in self._sessions.values())
        candidates = [s for s in self._sessions.values() if s.idle and s not in exclude]
        return min(candidates, key=lambda s: (s.used, -held[s.fingerprint], s.last_active), default=None)

    def _expire(self) -> None:
        deadline = self._clock() - self.limits.idle_seconds - _EXPIRY_GRACE_SECONDS
        for session_id in [sid for sid, s in self._sessions.items() if s.idle and s.last_active < deadline]:
            del self._sessions[session_id]
