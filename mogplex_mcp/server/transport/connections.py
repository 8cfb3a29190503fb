"""Connection limits for the HTTP transport: a deadline for request headers, a connection cap, the fd limit.

uvicorn's h11 protocol arms no timer until a connection has completed its first response, so a connection
that never finishes its headers (slow-loris) lives forever, and its `limit_concurrency` answers requests
with 503 but keeps accepting connections: 1,100 such connections once held all 1,024 file descriptors and
`/healthz` went silent. `GuardedH11Protocol` fixes both at the connection, where they happen:

- every request's headers must be complete `header_timeout` seconds after its first byte (the first request:
  after the connection opens), however slowly they trickle in, and its body `body_timeout` seconds after the
  headers; otherwise the connection is closed (a request stuck half-sent would otherwise hold its connection,
  and count as busy, forever);
- past `max_connections`, a new connection displaces the oldest one that is not serving a request (waiting
  for headers, or idle between keep-alive requests); only when every connection is busy is the newcomer
  closed. So a flood of half-open connections can never keep a real request (or `/healthz`) out.
- the probes (`GET /healthz`, `GET /readyz`) never compete with MCP traffic for those slots: when every slot
  is busy, up to `probe_slots` (`--probe-slots`, default `PROBE_SLOTS`) more connections are let in on
  probation; one whose request line is a probe is answered (then closed), any other is closed before its
  request reaches the app. So a load balancer or orchestrator still hears "alive"/"not ready" from a server
  whose connections are all serving calls.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

logger = logging.getLogger("mogplex_mcp.http")

# File descriptors kept for everything but client connections: upstream pools, event streams, the journal.
FD_RESERVE = 256
# h11's own default, pinned: a request line plus headers larger than this is refused with 400.
MAX_HEADER_BYTES = 16 * 1024
KEEP_ALIVE_SECONDS = 5
# Connections past the cap kept for liveness/readiness probes only.
PROBE_SLOTS = 8
PROBE_REQUEST_LINES = (b"GET /healthz ", b"GET /healthz?", b"GET /readyz ", b"GET /readyz?")
_REQUEST_LINE_MAX = 1024


class GatewayConfig(uvicorn.Config):
    """uvicorn's config plus the connection limits `GuardedH11Protocol` enforces."""

    def __init__(
        self,
        app: Any,
        *,
        max_connections: int,
        header_timeout: float,
        body_timeout: float,
        probe_slots: int = PROBE_SLOTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            http=GuardedH11Protocol,
            # A backstop only: the protocol keeps connections at or below the cap, so this never fires for them.
            limit_concurrency=max_connections + probe_slots + 1,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            **kwargs,
        )
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.probe_slots = probe_slots


class GuardedH11Protocol(H11Protocol):
    """h11 with a header deadline and a connection cap that displaces idle connections (module docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        guarded = config if isinstance(config, GatewayConfig) else None
        self._max_connections = guarded.max_connections if guarded else None
        self._header_timeout = guarded.header_timeout if guarded else None
        self._body_timeout = guarded.body_timeout if guarded else None
        self._probe_slots = guarded.probe_slots if guarded else PROBE_SLOTS
        self._deadline: asyncio.TimerHandle | None = None
        self.opened_at = 0.0
        # Let in past the cap for a probe only; its first bytes are held until the request line shows which.
        self.on_probation = False
        self._probe_admitted = False
        self._held = b""

    @property
    def waiting_for_request(self) -> bool:
        """Not serving a request: its headers are still arriving, or it idles between keep-alive requests."""
        return self.cycle is None or self.cycle.response_complete

    @property
    def reading_body(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened_at = self.loop.time()
        self._arm(self._header_timeout)
        if self._max_connections is not None and self._slots_taken() > self._max_connections:
            self._make_room()

    def _slots_taken(self) -> int:
        return sum(1 for other in self.connections if not getattr(other, "on_probation", False))

    def data_received(self, data: bytes) -> None:
        if self.on_probation and not self._admit_probe(data):
            return
        previous = self.cycle
        if self.waiting_for_request:
            self._arm(self._header_timeout)  # a keep-alive connection's next request starts now
        super().data_received(data)
        if self.cycle is not previous:  # the headers are complete: now the body, if any, has its deadline
            if self.on_probation and self.cycle is not None:
                self.cycle.keep_alive = False  # one probe, then the connection closes
            self._disarm()
            if self.reading_body:
                self._arm(self._body_timeout)
        elif not self.waiting_for_request and not self.reading_body:
            self._disarm()  # the whole request is in: it is being served

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _make_room(self) -> None:
        guarded = [other for other in self.connections if isinstance(other, GuardedH11Protocol) and other is not self]
        idle = [other for other in guarded if other.waiting_for_request and not other.on_probation]
        oldest = min(idle, key=lambda other: other.opened_at, default=None)
        if oldest is not None:
            oldest.drop()
            return
        # Every slot is busy: this one may still ask a probe. A full reserve gives up its oldest connection that
        # has not shown a probe's request line yet (a real probe sends it at once, so a flood cannot hold it).
        probation = [other for other in guarded if other.on_probation]
        waiting = [other for other in probation if not other._probe_admitted]
        if len(probation) >= self._probe_slots and waiting:
            victim = min(waiting, key=lambda other: other.opened_at)
            victim.drop()
            probation.remove(victim)
        if len(probation) < self._probe_slots:
            self.on_probation = True  # counted apart from the slots: it may ask a probe, nothing else
            return
        logger.warning("refusing a connection: all %d connections are serving requests", self._max_connections)
        self.drop()

    def _admit_probe(self, data: bytes) -> bool:
        """On probation: hold bytes until the request line is in; let them through only for a probe."""
        if self._probe_admitted:
            return True
        self._held += data
        if b"\n" not in self._held and len(self._held) < _REQUEST_LINE_MAX:
            return False
        if not self._held.startswith(PROBE_REQUEST_LINES):
            logger.info("refusing a connection past the cap: it is not a health or readiness probe")
            self.drop()
            return False
        self._probe_admitted = True
        held, self._held = self._held, b""
        self.data_received(held)
        return False

    def drop(self) -> None:
        """Close now, and stop counting it at once (the transport reports the loss only on the next tick)."""
        self._disarm()
        self.connections.discard(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _arm(self, seconds: float | None) -> None:
        if seconds is not None and self._deadline is None:
            self._deadline = self.loop.call_later(seconds, self._overdue)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _overdue(self) -> None:
        self._deadline = None
        if self.waiting_for_request or self.reading_body:
            self.drop()


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the (new) soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.info("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def connection_cap(requested: int, open_file_limit: int) -> int:
    """`requested`, lowered (with a warning) to what the open-file limit leaves after `FD_RESERVE`."""
    room = max(16, open_file_limit - FD_RESERVE)
    if requested > room:
        logger.warning(
            "--max-connections %d exceeds what the open-file limit (%d) allows; serving at most %d connections",
            requested,
            open_file_limit,
            room,
        )
        return room
    return requested
