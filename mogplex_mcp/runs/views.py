"""Facts derived from a run and its events: its one outcome (PR link, changed?, or unknown), timing, stuck hints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mogplex_mcp.api.models import RunDetail, RunEvent, is_terminal
from mogplex_mcp.runs.review import changed_files, final_message, pending_question

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


Delivered = Literal[
    "pull_request", "changes_without_pull_request", "no_changes", "no_pull_request", "unknown", "not_yet"
]
"""What a run delivered, as far as this server can tell:

- `pull_request`: a `git_delivery` event reported a pull request (`pull_request_url`).
- `changes_without_pull_request`: it reported changed code but no pull request link.
- `no_changes`: it reported that the agent changed nothing.
- `no_pull_request`: the run ended, every event was seen, and none reported a delivery.
- `unknown`: the run ended but this server could not see its last events (the API's 200-event window,
  no event stream), so a pull request may exist.
- `not_yet`: the run has not finished and has not delivered yet.
"""


@dataclass(frozen=True)
class Coverage:
    """How much of a run this server has seen, beyond the run's own fields."""

    saw_last_events: bool = True  # False when the events stop at the API's window with no stream past it
    cancel_requested: bool = False  # this server asked Mogplex to cancel the run


@dataclass(frozen=True)
class RunOutcome:
    """The one derived outcome of a run, shared by every tool result, resource and summary.

    Built only by `derive_outcome`; add a field there and every surface sees it.
    """

    run_id: str
    status: str
    terminal: bool
    delivered: Delivered
    pull_request_url: str | None
    code_changed: bool | None
    cancel_requested: bool  # asked to stop: by this server's cancel_run or a `cancel_requested` event
    stopped_by_cancel: bool  # ended failed/cancelled after a cancel request: the stop the user asked for
    saw_last_events: bool
    error: str | None
    failure_code: str | None
    working_branch: str | None
    probably_stuck: bool
    elapsed_seconds: float | None
    # For reviewing delegated work: the files the agent's file-editing tools wrote (first few; total) and its
    # last words (untrusted text). Empty/None: none seen in the events this server saw.
    changed_files: tuple[str, ...] = ()
    changed_files_total: int = 0
    final_message: str | None = None
    # In `awaiting_input` only: what the agent asked (untrusted text), as far as the events seen tell.
    pending_question: str | None = None

    @property
    def unknown(self) -> bool:
        return self.delivered == "unknown"

    def sentence(self) -> str:
        """One line a person would say about where the run stands (without the leading "Run <id>")."""
        return _sentence(self)


def derive_outcome(
    run: RunDetail, events: Iterable[RunEvent], coverage: Coverage | None = None, now: datetime | None = None
) -> RunOutcome:
    """Everything the server has seen of a run (its detail, its events, their coverage) as one outcome."""
    coverage = coverage or Coverage()
    seen = list(events)
    delivery = find_delivery(seen)
    failure = find_failure(seen)
    cancel_requested = coverage.cancel_requested or any(event.type == "cancel_requested" for event in seen)
    saw_last = coverage.saw_last_events or not run.terminal
    elapsed = elapsed_seconds(run, now)
    paths, total = changed_files(seen)
    return RunOutcome(
        run_id=run.run_id,
        status=run.status,
        terminal=run.terminal,
        delivered=_delivered(run, delivery, coverage.saw_last_events),
        pull_request_url=delivery.pull_request_url if delivery else None,
        code_changed=_code_changed(delivery),
        cancel_requested=cancel_requested,
        stopped_by_cancel=cancel_requested and run.status in ("failed", "cancelled"),
        saw_last_events=saw_last,
        error=run.error,
        failure_code=failure.failure_code if failure else None,
        working_branch=run.branch.working if run.branch else None,
        probably_stuck=probably_stuck(run, now),
        elapsed_seconds=round(elapsed, 1) if elapsed is not None else None,
        changed_files=tuple(paths),
        changed_files_total=total,
        final_message=final_message(seen),
        pending_question=pending_question(seen) if run.status == "awaiting_input" else None,
    )


def _delivered(run: RunDetail, delivery: Delivery | None, saw_last: bool) -> Delivered:
    if delivery is not None and delivery.pull_request_url:
        return "pull_request"
    if delivery is not None and delivery.changed is False:
        return "no_changes"
    if delivery is not None and delivery.changed:
        return "changes_without_pull_request"
    if not run.terminal:
        return "not_yet"
    return "no_pull_request" if saw_last else "unknown"


def _code_changed(delivery: Delivery | None) -> bool | None:
    if delivery is not None and delivery.changed is not None:
        return delivery.changed
    if delivery is not None and delivery.pull_request_url:
        return True
    return None


def _sentence(outcome: RunOutcome) -> str:
    status = outcome.status
    if status == "success":
        return _success_sentence(outcome)
    reason = f": {outcome.error}" if outcome.error else ""
    if outcome.stopped_by_cancel:
        return f"was stopped by the cancel request (it ended as '{status}'{reason})"
    if status == "failed":
        return f"failed{reason}"
    if status == "cancelled":
        return "was cancelled"
    if outcome.probably_stuck:
        minutes = int((outcome.elapsed_seconds or 0) // 60)
        return f"is probably stuck: still 'streaming' after {minutes} min (the service caps runs at 30 min)"
    asked = "; a cancel was requested" if outcome.cancel_requested else ""
    if status == "pending":
        return "is pending: waiting for a sandbox and runtime" + asked
    if status == "streaming":
        return "is running: the agent is working" + asked
    if status == "awaiting_input":
        what = (
            "the agent asked a question (see pendingQuestion)"
            if outcome.pending_question
            else "the agent asked a question (not in the events this server saw: read it in Mogplex)"
        )
        return (
            f"needs a person's input in Mogplex: {what} and waits for an answer there, at mogplexUrl "
            "(it cannot be answered through this server)" + asked
        )
    return f"is in status {status!r}" + ("" if is_terminal(status) else " (treated as still active)") + asked


def _success_sentence(outcome: RunOutcome) -> str:
    if outcome.delivered == "pull_request":
        return f"succeeded; pull request: {outcome.pull_request_url}"
    if outcome.delivered == "no_changes":
        return "succeeded, but the agent changed no code (no pull request)"
    branch = f" '{outcome.working_branch}'" if outcome.working_branch else ""
    if outcome.delivered == "changes_without_pull_request":
        return f"succeeded and changed code, but reported no pull request link (check the working branch{branch})"
    if outcome.delivered == "unknown":
        return (
            "succeeded; whether it opened a pull request is unknown: this server could not see the run's last "
            f"events (Mogplex's events API shows only the first 200) — check the working branch{branch} on "
            "GitHub or the run's page in Mogplex"
        )
    return "succeeded without reporting a pull request (every event was seen; none reported one)"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
