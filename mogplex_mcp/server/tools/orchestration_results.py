"""What the orchestration tools return: list_runs, wait_for_runs and continue_run results (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mogplex_mcp.runs.views import Delivered
from mogplex_mcp.server.results import UNTRUSTED_NOTE, StartRunResult, ToolResult

COVERAGE_NOTE = (
    "Only runs this server started or looked at with this token: the Mogplex API has no run listing, so runs "
    "started elsewhere (the Mogplex UI, another server) appear only once get_run or wait_for_run has seen them."
)
StatusSource = Literal["live", "refreshed", "final", "remembered"]
WaitMode = Literal["any", "all"]


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class ListedRun(_Out):
    """One known run: where it stands, how fresh that is, and its outcome when known."""

    run_id: str
    status: str | None = Field(description="null: never seen (only started).")
    terminal: bool
    needs_input: bool = Field(description="The agent waits for a person's answer in Mogplex.")
    repo_id: str | None = None
    title: str | None = Field(default=None, description="From the prompt, secrets redacted.")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    working_branch: str | None = None
    delivered: Delivered = Field(
        description="As in get_run's run.delivered. unknown: finished, but no answer this server gave recorded "
        "its outcome (call get_run) — a null pullRequestUrl then does not mean there is no pull request."
    )
    pull_request_url: str | None = None
    code_changed: bool | None = Field(default=None, description="null: not known.")
    changed_files_total: int | None = Field(default=None, description="Files edited, when known.")
    final_message: str | None = Field(default=None, description="The agent's last words (untrusted), cut short.")
    pending_question: str | None = Field(
        default=None, description="As in get_run: what an awaiting_input run's agent asked (untrusted)."
    )
    mogplex_url: str | None = Field(default=None, description="awaiting_input: where a person answers.")
    status_source: StatusSource = Field(
        description="live: followed now; refreshed: fetched for this call; final: finished, never changes; "
        "remembered: as last seen (statusAsOf), not refreshed within the rate budget."
    )
    status_as_of: datetime | None = None
    status_age_seconds: float | None = Field(default=None, description="Seconds since statusAsOf.")


class ListRunsResult(ToolResult):
    coverage: str = COVERAGE_NOTE
    runs: list[ListedRun] = Field(description="Runs whose status is confirmed (and, filtered, matches).")
    count: int
    unconfirmed: list[ListedRun] = Field(
        default_factory=list,
        description="Filtered lists only: runs last seen matching the filter whose status could not be refreshed "
        "now (rate budget); they may no longer match. statusAsOf/statusAgeSeconds say how old that is.",
    )
    next_cursor: str | None = Field(description="Pass as cursor for older runs; null: no more.")
    refreshed: int = Field(description="Active runs whose status was fetched for this call.")
    not_refreshed: int = Field(description="Active runs shown as remembered: the rate budget was spent.")


class WaitedRun(_Out):
    """One run of a wait_for_runs call, compact: status, outcome, what is new."""

    run_id: str
    status: str | None
    terminal: bool
    needs_input: bool
    summary: str
    working_branch: str | None = None
    delivered: Delivered | None = Field(default=None, description="As in get_run's run.delivered.")
    pull_request_url: str | None = None
    code_changed: bool | None = None
    changed_files: list[str] | None = None
    changed_files_total: int | None = None
    final_message: str | None = None
    pending_question: str | None = Field(
        default=None, description="As in get_run: what an awaiting_input run's agent asked (untrusted)."
    )
    mogplex_url: str | None = Field(default=None, description="awaiting_input: where a person answers.")
    error: str | None = Field(default=None, description="As in get_run's run.error: why the run failed.")
    new_event_count: int
    cursor: str | None = Field(default=None, description="Last event id known: list_run_events afterEventId.")
    unreadable_reason: str | None = Field(
        default=None, description="Why this run could not be read from Mogplex (it is not waited on)."
    )


class WaitForRunsResult(ToolResult):
    mode: WaitMode
    done: bool = Field(description="The mode's condition was met (false: the timeout passed first).")
    waited_seconds: float
    runs: list[WaitedRun]
    finished: list[str] = Field(description="Runs that reached a terminal status.")
    needs_input: list[str] = Field(description="Runs waiting for a person's input in Mogplex.")
    still_running: list[str] = Field(description="Runs not settled yet (status null: not read yet).")
    unreadable: list[str] = Field(description="Runs that could not be read (see unreadableReason): not waited on.")
    untrusted_content: str = UNTRUSTED_NOTE


class ContinueRunResult(StartRunResult):
    continued_from: str = Field(description="The run this one follows up on.")
    carried_over: list[str] = Field(description="What was taken from that run (branch, directory, harness, …).")
