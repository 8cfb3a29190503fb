"""A finished run's one outcome, written to the runs list by every path that sees it (tools, resources, followers).

`outcome_facts` is the only translation from a derived outcome to what list_runs keeps, so a row says what
get_run said: the same `delivered`, pull request, code changed and changed-files count, after a restart and on
every replica. A weaker sighting (delivery "unknown": the last events were not visible) never overwrites a
stronger one: those facts are left out and the stored ones stand.
"""

from __future__ import annotations

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.follower import Listener
from mogplex_mcp.runs.store import KnownRuns, RunFacts
from mogplex_mcp.runs.views import Coverage, RunOutcome, derive_outcome


def outcome_facts(outcome: RunOutcome) -> RunFacts | None:
    """What the runs list keeps of a finished run's outcome; None while it runs or when nothing is known."""
    if not outcome.terminal or outcome.delivered in ("unknown", "not_yet"):
        return None
    return RunFacts(
        pull_request_url=outcome.pull_request_url,
        code_changed=outcome.code_changed,
        delivered=outcome.delivered,
        changed_files_total=outcome.changed_files_total,
    )


def outcome_recorder(known: KnownRuns) -> Listener:
    """A follower listener that writes a finished run's outcome to the runs list (once per change)."""

    async def record(follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        run = follower.run
        if run is None or not follower.terminal or not (fresh or status_changed):
            return
        coverage = Coverage(saw_last_events=follower.saw_the_end and not follower.window_exhausted)
        facts = outcome_facts(derive_outcome(run, follower.events(), coverage))
        if facts is not None:
            await known.remember_run(follower.fingerprint, follower.run_id, facts=facts)

    return record
