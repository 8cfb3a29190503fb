"""Remember a followed run's outcome (PR link, code changed) in the journal once it is over, for list_runs."""

from __future__ import annotations

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.follower import Listener
from mogplex_mcp.runs.store import KnownRuns, RunFacts
from mogplex_mcp.runs.views import find_delivery


def outcome_recorder(known: KnownRuns) -> Listener:
    """A follower listener that writes a finished run's delivery facts to the runs list (once per change)."""

    async def record(follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        if not follower.terminal or not (fresh or status_changed):
            return
        delivery = find_delivery(follower.events())
        if delivery is None:
            return
        facts = RunFacts(pull_request_url=delivery.pull_request_url, code_changed=delivery.changed)
        await known.remember_run(follower.fingerprint, follower.run_id, facts=facts)

    return record
