"""SIGTERM drain for the HTTP server: stop taking work, finish what is in flight, exit within the grace period.

On the first SIGTERM (or Ctrl-C) `Drain.signalled`:

1. marks the process not ready (`/readyz` answers 503 "draining"), ends the waits that hold requests open
   (`wait_for_run` / `wait_for_runs` answer at once with what they have; the caller asks again, on another
   replica), closes `subscriptions/listen` streams with their final result and handshake-era sessions'
   standalone GET streams (a clean end of the SSE response), and hands this replica's Redis follow leases over
   (released, so another replica follows the run within about a second instead of waiting for expiry);
2. tells uvicorn to stop: it closes the listening socket (no new connections, so no new sessions), closes idle
   keep-alive connections, lets requests in flight finish (tool calls end within their own bound: start_run
   within its retry budget + 7 s), then runs the lifespan's cleanup (the journal is flushed and closed);
3. arms a watchdog: when the grace period ends, or on a second signal, the process exits at once (code 1),
   after writing through any start claims held in memory (bounded) — claims already on disk or in Redis are
   there before their POST was sent, so a start whose request went out is never forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from mogplex_mcp.runs.readiness import Readiness

logger = logging.getLogger("mogplex_mcp.http")

DEFAULT_GRACE_SECONDS = 30.0
# Of the grace period, what uvicorn's own graceful shutdown may use; the rest is for the lifespan's cleanup.
CLEANUP_RESERVE_SECONDS = 3.0
# How long a forced exit waits for its last writes (start claims held in memory).
# Both are defaults: `serve --drain-cleanup-reserve`, `--drain-flush` (cli_ops.py).
FORCED_FLUSH_SECONDS = 2.0
EXIT_FORCED = 1


def uvicorn_grace(grace_seconds: float, reserve_seconds: float = CLEANUP_RESERVE_SECONDS) -> int:
    """uvicorn's `timeout_graceful_shutdown` (whole seconds) for a grace period: room left for cleanup."""
    return max(1, int(grace_seconds - reserve_seconds))


class Drain:
    """The drain of one serving process (module docstring). `exit_now` is a seam for tests only."""

    def __init__(
        self,
        server: uvicorn.Server,
        readiness: Readiness,
        grace_seconds: float,
        session_manager: Any = None,
        *,
        exit_now: Callable[[int], None] = os._exit,
        flush_seconds: float = FORCED_FLUSH_SECONDS,
    ) -> None:
        self._server = server
        self._readiness = readiness
        self.grace_seconds = grace_seconds
        self._sessions = session_manager
        self._exit_now = exit_now
        self.flush_seconds = flush_seconds
        self._signals = 0
        self._timer: threading.Timer | None = None
        self._forced = threading.Lock()

    def signalled(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called from the signal handler: the first signal drains, the next one exits at once."""
        self._signals += 1
        if self._signals == 1:
            loop.call_soon_threadsafe(self._begin)
            self._timer = threading.Timer(self.grace_seconds, self.force, args=("the grace period ended",))
            self._timer.daemon = True
            self._timer.start()
        else:
            # Not in the handler itself: the flush takes locks the interrupted code may hold.
            threading.Thread(target=self.force, args=("a second signal",), daemon=True).start()

    def _begin(self) -> None:
        logger.warning(
            "draining (SIGTERM): not ready, no new connections; requests in flight finish within %.0f s",
            self.grace_seconds,
        )
        self._readiness.begin_drain()
        self._close_session_streams()
        self._server.should_exit = True

    def _close_session_streams(self) -> None:
        """Handshake-era sessions' standalone GET streams end now (the client would otherwise hold them open)."""
        # The SDK's manager keeps its sessions in a private dict; closing a GET stream is public API.
        instances = getattr(self._sessions, "_server_instances", None) or {}
        for transport in list(instances.values()):
            try:
                transport.close_standalone_sse_stream()
            except Exception:  # one session's trouble must not stop the drain
                logger.debug("could not close a session's GET stream", exc_info=True)

    def finished(self) -> None:
        """The server stopped by itself in time: no forced exit."""
        if self._timer is not None:
            self._timer.cancel()

    def force(self, why: str) -> None:
        """Exit now: write through what must not be lost (bounded), then leave without further cleanup."""
        if not self._forced.acquire(blocking=False):
            return
        logger.warning("exiting now (%s)", why)
        flush = threading.Thread(target=self._readiness.run_exit_hooks, daemon=True)
        flush.start()
        flush.join(self.flush_seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit_now(EXIT_FORCED)
