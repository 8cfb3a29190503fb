"""Background tasks that must not take the server down: crashes are caught, logged, restarted and reported.

The server's lifespan runs followers and the notifier in one task group; an exception escaping any of them
would cancel the group, and every later MCP call would fail ("Task group is not initialized") while the
process looked alive. `supervise` runs such a task: an unexpected exception is logged (its traceback once per
task), counted in `TaskHealth`, and the task restarted after a back-off that doubles per crash. `TaskHealth`
tells readiness the truth: a process-wide task (`critical`: the notifier) that keeps crashing (more than
`MAX_CRASHES` in a row without a clean stretch) makes `problems()` non-empty until it has run cleanly again.
A run's follower is not critical: one poisoned run must not take every replica reading it out of service;
its crashes are counted and logged, and it is restarted while someone watches the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

logger = logging.getLogger("mogplex_mcp.runs")

MAX_CRASHES = 5  # in a row: then the task reports not-ready (and is still restarted)
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
CLEAN_STRETCH_SECONDS = 60.0  # a task that ran this long without crashing starts counting afresh
KEPT_NAMES = 1_000


@dataclass
class TaskHealth:
    """Crash counts of this process's background tasks, by task name (bounded)."""

    clock: Callable[[], float] = time.monotonic
    crashes: dict[str, int] = field(default_factory=dict)
    critical: set[str] = field(default_factory=set)
    total_crashes: int = 0
    # Told when a critical task becomes a problem (name, reason) and when it is fine again (name): the
    # process's readiness registry (`/readyz`) hooks in here.
    on_problem: list[Callable[[str, str], None]] = field(default_factory=list)
    on_recovered: list[Callable[[str], None]] = field(default_factory=list)

    def crashed(self, name: str, *, critical: bool = False) -> int:
        """Count a crash; the number of crashes of `name` in a row."""
        if name not in self.crashes and len(self.crashes) >= KEPT_NAMES:
            self.crashes.pop(next(iter(self.crashes)))
        self.crashes[name] = self.crashes.get(name, 0) + 1
        if critical:
            self.critical.add(name)
        self.total_crashes += 1
        count = self.crashes[name]
        if name in self.critical and count == MAX_CRASHES + 1:
            for report in self.on_problem:
                report(name, f"background task crashed {count} times in a row")
        return count

    def settled(self, name: str) -> None:
        """`name` ran cleanly (or ended): its crashes no longer count."""
        count = self.crashes.pop(name, 0)
        if name in self.critical and count > MAX_CRASHES:
            for recovered in self.on_recovered:
                recovered(name)

    def problems(self) -> list[str]:
        """What readiness should report: tasks crashing over and over."""
        return [
            f"{name} crashed {count} times in a row"
            for name, count in self.crashes.items()
            if name in self.critical and count > MAX_CRASHES
        ]


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    health: TaskHealth,
    *,
    again: Callable[[], bool] = lambda: True,
    critical: bool = False,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Run `run()` until it returns; after an unexpected exception restart it while `again()` says so."""
    while True:
        began = health.clock()
        try:
            await run()
        except Exception as exc:  # a bug or bad data must never cancel the server's task group
            if health.clock() - began >= CLEAN_STRETCH_SECONDS:
                health.settled(name)
            count = health.crashed(name, critical=critical)
            delay = min(FIRST_BACKOFF_SECONDS * 2 ** (count - 1), MAX_BACKOFF_SECONDS)
            restart = again()
            logger.error(
                "background task %s crashed (%s)%s",
                name,
                type(exc).__name__,
                f"; restarting in {delay:g} s" if restart else "; not restarted (no longer needed)",
                exc_info=count == 1,  # the traceback once per run of crashes, not on every restart
            )
            if not restart:
                return
            await sleep(delay)
            if not again():
                return
            continue
        health.settled(name)
        return
