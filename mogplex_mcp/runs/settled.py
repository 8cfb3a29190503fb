"""When a wait may stop — the run is over, needs a person, or can no longer be followed — and waiting on several."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from mogplex_mcp.api.models import RunDetail
from mogplex_mcp.runs.followed_run import RunFollower

AWAITING_INPUT = "awaiting_input"


def needs_input(run: RunDetail | None) -> bool:
    """The agent waits for a person, who answers in Mogplex's own UI (there is no API for it)."""
    return run is not None and run.status == AWAITING_INPUT


def stopped(follower: RunFollower) -> bool:
    """Nothing more will come from this follower: the run is over, or following it ended."""
    return follower.done or (not follower.active and follower.ready.is_set())


def settled(follower: RunFollower) -> bool:
    """A wait on this run may return: it is over, it needs a person's input, or it cannot be followed."""
    return stopped(follower) or needs_input(follower.run)


async def wait_any_changed(followers: Sequence[RunFollower], versions: Sequence[int]) -> None:
    """Return once any still-followed follower's version has moved past the one given for it.

    Followers that have stopped are left out (their wait would return at once); with none left, returns.
    """
    watched = [
        (follower, version) for follower, version in zip(followers, versions, strict=True) if not stopped(follower)
    ]
    if not watched:
        return
    async with anyio.create_task_group() as tg:

        async def one(follower: RunFollower, version: int) -> None:
            await follower.wait_changed(version)
            tg.cancel_scope.cancel()

        for follower, version in watched:
            tg.start_soon(one, follower, version)
