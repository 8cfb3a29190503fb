"""Readiness: whether this process should get traffic now, and the drain that begins when it is told to stop.

`/readyz` (server/transport/http.py) asks `Readiness.problems()`. A process is ready when every named check
passes (the start journal can be written, the configured Redis answers), no background task has reported a
failure, and it is not draining. Anything may take part:

- `add_check(name, probe)`: `probe()` returns None when fine, else the reason (it is asked at most once per
  `CACHE_SECONDS`, bounded by `check_timeout` (default
  `CHECK_TIMEOUT_SECONDS`; `serve --readiness-timeout`), so a flood of probes costs the journal and Redis nothing);
- `report_failure(name, reason)` / `report_ok(name)`: a background task (a Redis feed reader, a notifier) says
  it crashed or cannot do its work, and later that it recovered;
- `supervise(name, fn)`: runs `fn`, reporting its crash (not its cancellation) instead of taking the server down.

Draining (SIGTERM): `begin_drain()` marks the process not ready, ends the waits that hold a request open
(`cut_short()` scopes: `wait_for_run`, `wait_for_runs` answer with what they have, so their caller asks again —
through the proxy, on another replica) and calls the `on_drain` hooks (the follower hub hands its Redis leases
over). It is synchronous: the signal handler's loop callback calls it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

logger = logging.getLogger("mogplex_mcp.readiness")

CACHE_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 3.0
DRAINING = "draining: this process is shutting down (SIGTERM); send new requests to another replica"
STARTING = "starting: the server's lifespan has not started yet"

Probe = Callable[[], Awaitable[str | None]]


@dataclass
class _Cached:
    at: float = -1e9
    problems: dict[str, str] = field(default_factory=dict)


class Readiness:
    """Named checks, reported failures and the drain state of one process (see the module docstring)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, check_timeout: float = CHECK_TIMEOUT_SECONDS
    ) -> None:
        self._clock = clock
        self.check_timeout = check_timeout
        self._checks: dict[str, Probe] = {}
        self._failures: dict[str, str] = {}
        self._hooks: list[Callable[[], None]] = []
        self._exit_hooks: list[Callable[[], None]] = []
        self._closers: set[Callable[[], None]] = set()
        self._scopes: set[anyio.CancelScope] = set()
        self._cached = _Cached()
        self._lock: anyio.Lock | None = None
        self.started = False
        self.draining = False

    @property
    def check_names(self) -> list[str]:
        return sorted(self._checks)

    def add_check(self, name: str, probe: Probe) -> None:
        self._checks[name] = probe
        self._cached = _Cached()

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)
        self._cached = _Cached()

    def report_failure(self, name: str, reason: str) -> None:
        if self._failures.get(name) != reason:
            logger.warning("not ready: %s: %s", name, reason)
        self._failures[name] = reason

    def report_ok(self, name: str) -> None:
        if self._failures.pop(name, None) is not None:
            logger.warning("%s works again", name)

    async def supervise(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a background task; a crash marks the process not ready (and is logged) instead of ending it."""
        try:
            await fn()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a crashed task: the orchestrator should route around us, and restart us
            logger.exception("background task %s crashed", name)
            self.report_failure(name, f"background task crashed ({type(exc).__name__})")

    async def problems(self) -> dict[str, str]:
        """What keeps this process from being ready, by name (empty: ready). Checks run at most once a second."""
        found: dict[str, str] = {}
        if not self.started:
            found["lifespan"] = STARTING
        if self.draining:
            found["drain"] = DRAINING
        found |= await self._checked()
        found |= self._failures
        return found

    async def _checked(self) -> dict[str, str]:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # one probe at a time: concurrent /readyz calls share its answer
            if self._clock() - self._cached.at < CACHE_SECONDS:
                return dict(self._cached.problems)
            problems: dict[str, str] = {}
            for name, probe in list(self._checks.items()):
                reason: str | None = f"no answer within {self.check_timeout:g} s"
                with anyio.move_on_after(self.check_timeout):
                    try:
                        reason = await probe()
                    except Exception as exc:  # a probe that fails is the answer, not a crash of /readyz
                        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                if reason is not None:
                    problems[name] = reason
            self._cached = _Cached(self._clock(), problems)
            return dict(problems)

    def on_drain(self, hook: Callable[[], None]) -> None:
        """Call `hook` (synchronously, once) when the drain begins."""
        self._hooks.append(hook)

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Call `hook` when the process is forced to exit (grace period over, second signal): last writes."""
        self._exit_hooks.append(hook)

    def run_exit_hooks(self) -> None:
        for hook in self._exit_hooks:
            try:
                hook()
            except Exception:
                logger.exception("an exit hook failed")

    @contextmanager
    def closing_on_drain(self, close: Callable[[], None]) -> Iterator[None]:
        """While the block runs, the drain calls `close` (e.g. end a listen stream gracefully)."""
        if self.draining:
            close()
        self._closers.add(close)
        try:
            yield
        finally:
            self._closers.discard(close)

    @contextmanager
    def cut_short(self) -> Iterator[anyio.CancelScope]:
        """A scope that the drain cancels: wrap a wait that may end early with a true "not yet" answer."""
        with anyio.CancelScope() as scope:
            if self.draining:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def begin_drain(self) -> None:
        """Not ready from now on; end the waits; run the hooks (once)."""
        if self.draining:
            return
        self.draining = True
        for scope in list(self._scopes):
            scope.cancel()
        for hook in [*self._closers, *self._hooks]:
            try:
                hook()
            except Exception:
                logger.exception("a drain hook failed")
