"""The model's-eye checks: what a model reads about a run, held against what the emulator knows happened.

`Truth` is the run as the emulator scripted it (every event, past the API's 200 too); `Reader` reads every
tool result and resource a model would in one flow and checks each one with `check_run_answer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mcp_types import TextResourceContents

from mogplex_mcp.emulator import EmulatorHandle
from tests.server.harness import Session

READERS = ("get_run", "list_run_events", "wait_for_run")
RESTART_WORDS = ("start_run again", "start a new run", "start again", "start another run")


@dataclass(frozen=True)
class Truth:
    """What really happened to a run, from the emulator's own records."""

    status: str
    terminal: bool
    pull_request_url: str | None
    changed: bool | None
    cancel_requested: bool
    error: str | None
    event_ids: list[str]
    root_directory: str | None
    coalesced_ids: frozenset[str] = frozenset()  # events a compact view stands for under a later event's id

    @classmethod
    def of(cls, emulator: EmulatorHandle, run_id: str) -> Truth:
        run = emulator.emulator.store.get(run_id)
        assert run is not None, f"the emulator has no run {run_id}"
        now = emulator.emulator.clock()
        events = run.events(now)
        delivery = [e["payload"] for e in events if e["payload"].get("stage") == "git_delivery"]
        status = run.status(now)
        return cls(
            status=status,
            terminal=run.is_terminal(now),
            pull_request_url=delivery[-1].get("pull_request_url") if delivery else None,
            changed=delivery[-1].get("changed") if delivery else None,
            cancel_requested=run.cancel_requested_at is not None,
            error=run.detail(now)["error"],
            event_ids=[e["id"] for e in events],
            root_directory=run.root_directory,
            coalesced_ids=frozenset(
                e["id"]
                for e in events
                if e["type"] == "tool_started" or (e["payload"] or {}).get("kind") == "assistant_delta"
            ),
        )


@dataclass
class Reader:
    """Reads what a model reads about one run and checks every answer against the truth."""

    session: Session
    run_id: str
    sees_everything: bool  # False: more than 200 events and no stream, so the server cannot see the end
    checked: list[str] = field(default_factory=list)

    def truth(self) -> Truth:
        return Truth.of(self.session.emulator, self.run_id)

    async def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.session.ok(name, **arguments)
        check_run_answer(f"{name}({_short(arguments)})", name, result, self.truth(), self.sees_everything)
        self.checked.append(name)
        return result

    async def resources(self) -> None:
        """The three resources of the run, each checked like a tool result."""
        truth = self.truth()
        uri = f"mogplex://runs/{self.run_id}"
        document = json.loads(await self._read(uri))
        check_run_answer("resource run", "resource", document, truth, self.sees_everything)
        ids = await self.event_log_ids()
        assert len(ids) == len(set(ids)), "the event log resource repeated an event"
        visible = truth.event_ids if self.sees_everything else truth.event_ids[:200]
        assert ids == visible, "the event log resource does not hold the run's events, in order"
        log = await self._read(f"{uri}/log")
        assert len(log) < 16_000, f"the transcript is {len(log)} characters"
        outcome = log.rstrip().splitlines()[-1]
        check_sentence("resource log", outcome, truth, self.sees_everything, terminal=truth.terminal)
        self.checked += ["resource run", "resource events", "resource log"]

    async def event_log_ids(self) -> list[str]:
        """Every event id of the /events resource, page by page (each page bounded like a result)."""
        page = json.loads(await self._read(f"mogplex://runs/{self.run_id}/events"))
        ids = [event["id"] for event in page["events"]]
        while page["nextUri"]:
            text = await self._read(page["nextUri"])
            assert len(text) < 40_000, f"an event log page is {len(text)} characters"
            page = json.loads(text)
            ids += [event["id"] for event in page["events"]]
        return ids

    async def _read(self, uri: str) -> str:
        contents = (await self.session.client.read_resource(uri)).contents[0]
        assert isinstance(contents, TextResourceContents)
        return contents.text


def _short(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={str(v)[:12]}" for k, v in arguments.items() if k not in ("prompt", "repoId"))


def run_view_of(result: dict[str, Any]) -> dict[str, Any]:
    run = result.get("run")
    assert isinstance(run, dict), f"no run view in {sorted(result)}"
    return run


def check_run_answer(where: str, tool: str, result: dict[str, Any], truth: Truth, sees_everything: bool) -> None:
    """One answer about a run (tool result or run resource) agrees with what really happened."""
    run = run_view_of(result)
    summary: str = result["summary"]
    steps: list[str] = result.get("nextSteps", [])
    if truth.root_directory:
        assert run["rootDirectory"] == truth.root_directory, f"{where}: rootDirectory {run['rootDirectory']!r}"
    if not run["terminal"]:
        assert run["pullRequestUrl"] is None or run["pullRequestUrl"] == truth.pull_request_url, where
        _no_restart_after_cancel(where, steps, truth)
        return
    assert run["status"] == truth.status, f"{where}: status {run['status']} but the run is {truth.status}"
    check_delivery(where, run, truth, sees_everything)
    check_sentence(where, summary, truth, sees_everything, terminal=True)
    check_steps(where, tool, result, steps, truth)


def check_delivery(where: str, run: dict[str, Any], truth: Truth, sees_everything: bool) -> None:
    if run["delivered"] == "unknown":
        assert not sees_everything, f"{where}: says unknown although the server could see every event"
        assert run["pullRequestUrl"] is None and run["codeChanged"] is None, where
        return
    assert run["pullRequestUrl"] == truth.pull_request_url, f"{where}: pullRequestUrl {run['pullRequestUrl']!r}"
    assert run["codeChanged"] == truth.changed, f"{where}: codeChanged {run['codeChanged']!r} vs {truth.changed}"
    expected = "pull_request" if truth.pull_request_url else "no_changes" if truth.changed is False else None
    if truth.status == "success":
        assert run["delivered"] == (expected or "no_pull_request"), f"{where}: delivered {run['delivered']}"
    assert run["stoppedByCancel"] is (truth.cancel_requested and truth.status in ("failed", "cancelled")), where


def check_sentence(where: str, text: str, truth: Truth, sees_everything: bool, *, terminal: bool) -> None:
    """A summary (or transcript outcome line) says what happened, and nothing false."""
    lowered = text.lower()
    if not terminal:
        return
    if truth.pull_request_url and truth.status == "success":
        if truth.pull_request_url in text:
            return
        assert not sees_everything, f"{where}: the pull request is missing from: {text}"
        assert "unknown" in lowered and "branch" in lowered, f"{where}: must say the outcome is unknown: {text}"
        assert "no pull request" not in lowered, f"{where}: claims no pull request it could not see: {text}"
        return
    assert "pull request:" not in lowered, f"{where}: reports a pull request the run never opened: {text}"
    if truth.status == "success" and truth.changed is False:
        assert "changed no code" in lowered, f"{where}: {text}"
    elif truth.cancel_requested and truth.status in ("failed", "cancelled"):
        assert "stopped by the cancel request" in lowered, f"{where}: a user's cancel reported as: {text}"
    elif truth.status == "failed":
        assert "failed" in lowered and (truth.error or "") in text, f"{where}: failure without its reason: {text}"


def check_steps(where: str, tool: str, result: dict[str, Any], steps: list[str], truth: Truth) -> None:
    joined = " ".join(steps)
    if truth.pull_request_url and truth.pull_request_url in result["summary"]:
        assert truth.pull_request_url in joined, f"{where}: no step reports the pull request: {steps}"
    if "succeeded" in result["summary"] and truth.pull_request_url is None:
        assert "pull request:" not in joined.lower(), where
    _no_restart_after_cancel(where, steps, truth)
    _never_points_at_itself(where, tool, result, steps)


def _no_restart_after_cancel(where: str, steps: list[str], truth: Truth) -> None:
    if truth.cancel_requested and truth.status != "success":
        joined = " ".join(steps).lower()
        assert not any(word in joined for word in RESTART_WORDS), f"{where}: suggests restarting a stop: {steps}"


def _never_points_at_itself(where: str, tool: str, result: dict[str, Any], steps: list[str]) -> None:
    """A finished run never changes: a reader's steps name the same reader only to read on (a next page)."""
    if tool not in READERS:
        return
    for step in steps:
        if tool in step:
            assert "afterEventId" in step and result.get("hasMore"), (
                f"{where}: a step points {tool} back at itself: {step}"
            )


def check_compact_run(where: str, row: dict[str, Any], truth: Truth) -> None:
    """One run of a wait_for_runs or list_runs answer agrees with what really happened.

    A row may say less than the truth (delivered "unknown", a null it marks as not known) but never something
    false: no pull request the run did not open, no "no pull request" for one it did, no stale status filed
    as confirmed.
    """
    if row.get("statusSource") == "remembered":
        return  # shown as last seen, with its age: not a claim about now
    if not row["terminal"]:  # a delivery may be reported before the run ends; it must be the real one
        assert row["pullRequestUrl"] in (None, truth.pull_request_url), f"{where}: {row['pullRequestUrl']}"
        assert row["delivered"] != "unknown", f"{where}: 'unknown' is for finished runs"
    if not row["terminal"] and truth.terminal:  # it was running when answered, and finished since (speed 50)
        return
    assert row["status"] == truth.status, f"{where}: status {row['status']} but the run is {truth.status}"
    assert row["terminal"] is truth.terminal and row["needsInput"] is (truth.status == "awaiting_input"), where
    if truth.status == "awaiting_input":
        assert row["pendingQuestion"] and row["mogplexUrl"], f"{where}: the question or where to answer is missing"
    else:
        assert row.get("pendingQuestion") is None, where
    if truth.pull_request_url is None:
        assert row["pullRequestUrl"] is None, f"{where}: reports a pull request the run never opened"
    if not truth.terminal:
        return
    if row["delivered"] == "unknown":
        assert row["pullRequestUrl"] is None and row["codeChanged"] is None, where
        return
    assert row["pullRequestUrl"] == truth.pull_request_url, f"{where}: pullRequestUrl {row['pullRequestUrl']!r}"
    assert row["codeChanged"] == truth.changed, f"{where}: codeChanged {row['codeChanged']!r} vs {truth.changed}"
    if truth.status == "success" and truth.pull_request_url:
        assert row["delivered"] == "pull_request", f"{where}: delivered {row['delivered']}"
    if truth.status == "failed" and "error" in row and row.get("summary"):  # wait_for_runs rows
        assert row["error"] == truth.error and "failed" in row["summary"], f"{where}: {row['summary']}"


def check_listed(where: str, listed: dict[str, Any], truths: dict[str, Truth], status: str = "all") -> None:
    """Every row of a list_runs answer, and its filing under the filter, agrees with the truth."""
    for row in listed["runs"]:
        truth = truths.get(row["runId"])
        if truth is None:
            continue
        check_compact_run(f"{where} {row['runId'][:8]}", row, truth)
        if status != "all" and row["statusSource"] != "remembered":
            assert truth.terminal is (status == "finished"), f"{where}: {truth.status} run filed under {status}"
    for row in listed.get("unconfirmed", []):
        assert row["statusSource"] == "remembered" and row["statusAgeSeconds"] is not None, where
