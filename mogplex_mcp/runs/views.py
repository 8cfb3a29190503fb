"""Facts derived from a run and its events: delivery (PR link, changed?), elapsed time, stuck hints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mogplex_mcp.api.models import RunDetail, RunEvent, is_terminal

# Production caps a run at 30 min; one killed at the cap can stay `streaming` for hours.
STUCK_AFTER_SECONDS = 35 * 60


@dataclass(frozen=True)
class Delivery:
    """What the `git_delivery` log says: where the pull request is and whether code changed."""

    pull_request_url: str | None
    changed: bool | None


@dataclass(frozen=True)
class Failure:
    exit_code: int | None
    failure_code: str | None


def find_delivery(events: Iterable[RunEvent]) -> Delivery | None:
    """The last `git_delivery` log event's facts, or None when the run has not delivered (yet)."""
    found: Delivery | None = None
    for event in events:
        if event.payload.get("stage") != "git_delivery":
            continue
        url = event.payload.get("pull_request_url") or event.payload.get("pullRequestUrl")
        changed = event.payload.get("changed")
        found = Delivery(
            pull_request_url=url if isinstance(url, str) and url.startswith("https://") else None,
            changed=changed if isinstance(changed, bool) else None,
        )
    return found


def find_failure(events: Iterable[RunEvent]) -> Failure | None:
    """Exit and failure codes from the last `finished`/`failed` event that carries them."""
    found: Failure | None = None
    for event in events:
        if event.type not in ("finished", "failed"):
            continue
        exit_code = event.payload.get("exit_code")
        failure_code = event.payload.get("failure_code")
        found = Failure(
            exit_code=exit_code if isinstance(exit_code, int) else None,
            failure_code=failure_code if isinstance(failure_code, str) else None,
        )
    return found


def elapsed_seconds(run: RunDetail, now: datetime | None = None) -> float | None:
    """Seconds since the run was created: up to its last update when terminal, else up to now."""
    if run.created_at is None:
        return None
    start = _aware(run.created_at)
    end = _aware(run.updated_at) if run.terminal and run.updated_at else (now or datetime.now(UTC))
    return max(0.0, (end - start).total_seconds())


def probably_stuck(run: RunDetail, now: datetime | None = None) -> bool:
    """True for a run still `streaming` long past the service's 30-minute cap."""
    if run.status != "streaming":
        return False
    elapsed = elapsed_seconds(run, now)
    return elapsed is not None and elapsed > STUCK_AFTER_SECONDS


def describe_status(run: RunDetail, delivery: Delivery | None, now: datetime | None = None) -> str:
    """One line a person would say about where the run stands."""
    status = run.status
    if status == "success":
        if delivery and delivery.pull_request_url:
            return f"succeeded; pull request: {delivery.pull_request_url}"
        if delivery and delivery.changed is False:
            return "succeeded, but the agent changed no code (no pull request)"
        return "succeeded (no pull request reported)"
    if status == "failed":
        return f"failed: {run.error}" if run.error else "failed"
    if status == "cancelled":
        return "was cancelled"
    if probably_stuck(run, now):
        minutes = int((elapsed_seconds(run, now) or 0) // 60)
        return f"is probably stuck: still 'streaming' after {minutes} min (the service caps runs at 30 min)"
    if status == "pending":
        return "is pending: waiting for a sandbox and runtime"
    if status == "streaming":
        return "is running: the agent is working"
    if status == "awaiting_input":
        return (
            "needs a person's input in Mogplex: the agent asked a question and waits for an answer there "
            "(it cannot be answered through this server)"
        )
    return f"is in status {status!r}" + ("" if is_terminal(status) else " (treated as still active)")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
