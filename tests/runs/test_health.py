"""Supervised background tasks: a crash is restarted with back-off; a critical task that keeps crashing is a
readiness problem until it runs cleanly; a task nobody needs any more is not restarted."""

from __future__ import annotations

import pytest

from mogplex_mcp.runs.health import MAX_CRASHES, TaskHealth, supervise

pytestmark = pytest.mark.anyio


async def test_a_critical_task_that_keeps_crashing_is_reported_until_it_runs_cleanly() -> None:
    health = TaskHealth()
    told: list[str] = []
    health.on_problem.append(lambda name, reason: told.append(f"problem {name}: {reason}"))
    health.on_recovered.append(lambda name: told.append(f"recovered {name}"))
    pauses: list[float] = []
    runs: list[int] = []
    seen_problems: list[list[str]] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        seen_problems.append(health.problems())

    async def notifier() -> None:
        runs.append(1)
        if len(runs) <= MAX_CRASHES + 2:
            raise RuntimeError("a bug")

    await supervise("notifier", notifier, health, critical=True, sleep=sleep)

    assert len(runs) == MAX_CRASHES + 3  # restarted after every crash, then ran to its end
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0]  # the back-off doubles
    assert seen_problems[MAX_CRASHES - 1] == [] and seen_problems[MAX_CRASHES] != []
    assert health.problems() == [] and health.total_crashes == MAX_CRASHES + 2
    assert told == [f"problem notifier: background task crashed {MAX_CRASHES + 1} times in a row", "recovered notifier"]


async def test_a_followers_crashes_never_make_the_process_unready_and_it_stops_when_unneeded() -> None:
    health = TaskHealth()
    watched = [True]
    attempts: list[int] = []

    async def sleep(seconds: float) -> None:
        if len(attempts) >= 10:
            watched[0] = False  # the last watcher left

    async def follower() -> None:
        attempts.append(1)
        raise ValueError("poisoned run")

    await supervise("follower of run-1", follower, health, again=lambda: watched[0], sleep=sleep)
    assert len(attempts) == 10 and health.problems() == []


async def test_a_task_that_keeps_crashing_makes_the_process_unready_until_it_recovers() -> None:
    from mogplex_mcp.runs.readiness import Readiness

    readiness = Readiness()
    readiness.started = True
    health = TaskHealth()
    health.on_problem.append(readiness.report_failure)  # as the server's lifespan wires them
    health.on_recovered.append(readiness.report_ok)
    verdicts: list[dict[str, str]] = []
    crashes = [0]

    async def sleep(seconds: float) -> None:
        verdicts.append(await readiness.problems())

    async def notifier() -> None:
        crashes[0] += 1
        if crashes[0] <= MAX_CRASHES + 1:
            raise OSError("the flush failed")

    await supervise("resource notifications", notifier, health, critical=True, sleep=sleep)
    assert verdicts[MAX_CRASHES - 1] == {}
    assert f"crashed {MAX_CRASHES + 1} times in a row" in verdicts[MAX_CRASHES]["resource notifications"]
    assert await readiness.problems() == {}  # it ran cleanly: ready again
