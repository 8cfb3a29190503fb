"""`derive_outcome`: one outcome per run from its detail, its events and how much of them was seen."""

from __future__ import annotations

from typing import Any

from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs.views import Coverage, derive_outcome

RUN_ID = "0b9f3a52-5f7e-4c3e-9a51-6b2d8f1e4c11"
PR = "https://github.com/acme/api/pull/7"


def run(status: str, error: str | None = None) -> RunDetail:
    return RunDetail.model_validate(
        {"runId": RUN_ID, "status": status, "error": error, "branch": {"base": "main", "working": "fix-auth"}}
    )


def event(index: int, kind: str, **payload: Any) -> RunEvent:
    return RunEvent.model_validate({"id": f"e{index}", "type": kind, "payload": payload})


def delivery(changed: bool, url: str | None) -> RunEvent:
    return event(9, "log", stage="git_delivery", changed=changed, pull_request_url=url)


def test_a_reported_pull_request_is_the_outcome() -> None:
    outcome = derive_outcome(run("success"), [event(1, "log"), delivery(True, PR)])
    assert (outcome.delivered, outcome.pull_request_url, outcome.code_changed) == ("pull_request", PR, True)
    assert outcome.sentence() == f"succeeded; pull request: {PR}"


def test_no_changes_is_said_plainly() -> None:
    outcome = derive_outcome(run("success"), [delivery(False, None)])
    assert outcome.delivered == "no_changes" and outcome.code_changed is False
    assert "changed no code" in outcome.sentence()


def test_unseen_last_events_make_the_delivery_unknown_never_absent() -> None:
    outcome = derive_outcome(run("success"), [event(1, "log")], Coverage(saw_last_events=False))
    assert outcome.delivered == "unknown" and outcome.unknown
    assert outcome.pull_request_url is None and outcome.code_changed is None
    sentence = outcome.sentence()
    assert "unknown" in sentence and "'fix-auth'" in sentence and "no pull request" not in sentence


def test_every_event_seen_and_none_delivered_is_no_pull_request() -> None:
    outcome = derive_outcome(run("success"), [event(1, "log")], Coverage(saw_last_events=True))
    assert outcome.delivered == "no_pull_request"


def test_a_failure_after_a_cancel_request_is_the_stop_that_was_asked_for() -> None:
    events = [event(1, "cancel_requested"), event(2, "failed", failure_code="ai_call_not_pending")]
    by_event = derive_outcome(run("failed", "ai_call is not pending"), events)
    by_call = derive_outcome(run("failed", "ai_call is not pending"), [], Coverage(cancel_requested=True))
    for outcome in (by_event, by_call):
        assert outcome.stopped_by_cancel and "stopped by the cancel request" in outcome.sentence()
    assert by_event.failure_code == "ai_call_not_pending"


def test_a_failure_nobody_asked_for_says_why() -> None:
    outcome = derive_outcome(run("failed", "Agent exited with code 1"), [])
    assert not outcome.stopped_by_cancel and outcome.sentence() == "failed: Agent exited with code 1"


def test_a_running_run_has_not_delivered_yet_even_unseen() -> None:
    outcome = derive_outcome(run("streaming"), [], Coverage(saw_last_events=False))
    assert outcome.delivered == "not_yet" and outcome.saw_last_events and not outcome.terminal


def test_an_asking_run_says_what_it_asked_redacted_and_bounded() -> None:
    from mogplex_mcp.server.results import RunView

    secret = "mog_" + "Q" * 30
    asked = f"Keep the old endpoint? My token is {secret} " + "and more " * 100
    outcome = derive_outcome(run("awaiting_input"), [event(1, "log", stage="agent", question=asked)])
    view = RunView.build(run("awaiting_input"), outcome, secret, mogplex_url="https://www.mogplex.com")
    assert view.pending_question is not None and view.pending_question.startswith("Keep the old endpoint?")
    assert secret not in view.pending_question and len(view.pending_question) <= 340  # 300 + the cut note
    assert view.mogplex_url == "https://www.mogplex.com"
    finished = derive_outcome(run("success"), [event(1, "log", stage="agent", question=asked)])
    assert finished.pending_question is None, "only a run that waits on a person has a pending question"
    assert RunView.build(run("success"), finished, mogplex_url="https://www.mogplex.com").mogplex_url is None
