"""One simulated run: its state derived lazily from elapsed time, its events, cancellation, its JSON views."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mogplex_mcp.emulator.config import DEMO_USER
from mogplex_mcp.emulator.sanitize import sanitize_payload
from mogplex_mcp.emulator.scenarios import HEARTBEAT_PERIOD, PlannedEvent, Script, cancel_events, heartbeat_event

TERMINAL = frozenset({"success", "failed", "cancelled"})
RUNS_PATH = "/api/v1/mogplex/runs"
# Documented cancels settle a moment after the request; observed production answers already `cancelled`.
DOCUMENTED_CANCEL_DELAY = 1.0
CancelResult = Literal["requested", "already_terminal", "conflict"]


@dataclass
class Run:
    """A run of one scenario, created at `created` (emulator clock seconds)."""

    run_id: str
    ai_call_id: str
    sandbox_record_id: str
    sandbox_id: str
    runtime_run_id: str
    repo_id: str
    harness: str
    branch: dict[str, Any]
    root_directory: str | None
    created: float
    scenario: str
    script: Script
    event_ids: Callable[[int], str]
    iso: Callable[[float], str]
    max_events: int
    owner: str = DEMO_USER  # the user whose token started it; other users get 404 for it
    cancel_requested_at: float | None = None
    _shown: list[dict[str, Any]] = field(default_factory=list)
    _next_heartbeat: int = 0

    def status(self, now: float) -> str:
        offset = now - self.created
        script = self.script
        if script.finished_at is not None and offset >= script.finished_at:
            return script.outcome
        if script.awaiting_at is not None and offset >= script.awaiting_at:
            return "awaiting_input"
        if script.streaming_at is not None and offset >= script.streaming_at:
            return "streaming"
        return "pending"

    def is_terminal(self, now: float) -> bool:
        return self.status(now) in TERMINAL

    def events(self, now: float) -> list[dict[str, Any]]:
        """Every event whose time has come, oldest first; once shown an event never changes."""
        offset = now - self.created
        self._add_heartbeats(offset)
        planned = self.script.events  # sorted by time (build_script sorts; cancel and heartbeats append)
        while len(self._shown) < len(planned) and planned[len(self._shown)].at <= offset:
            self._shown.append(self._render(planned[len(self._shown)], len(self._shown)))
        return list(self._shown)

    def next_event_at(self) -> float | None:
        """Emulator-clock time of the next event not shown yet, if one is planned."""
        planned = self.script.events
        if len(self._shown) < len(planned):
            return self.created + planned[len(self._shown)].at
        return None

    def cancel(self, now: float, flavor: str) -> CancelResult:
        """Request cancellation: idempotent, a no-op on a terminal run, 'conflict' when unreachable."""
        if self.is_terminal(now):
            return "already_terminal"
        if self.cancel_requested_at is not None:
            return "requested"
        if self.script.cancel_behaviour == "conflict":
            return "conflict"
        offset = now - self.created
        self.events(now)  # fix what has been shown before the plan changes
        self.cancel_requested_at = now
        race = self.script.cancel_behaviour == "race" and self.status(now) == "pending"
        settle = offset + (0.0 if flavor == "observed" else DOCUMENTED_CANCEL_DELAY)
        script = self.script
        if self.status(now) == "pending":
            script.streaming_at = None
        script.events = [event for event in script.events if event.at <= offset]
        script.events += cancel_events(flavor, offset, settle, race=race)
        script.heartbeat_from = None
        script.awaiting_at = None
        script.finished_at = settle
        script.outcome = "failed" if race else "cancelled"
        script.error = "ai_call is not pending" if race else None
        return "requested"

    def detail(self, now: float) -> dict[str, Any]:
        """The run as GET /runs/{id} shows it (inside `run`)."""
        status = self.status(now)
        return {
            "runId": self.run_id,
            "harness": self.harness,
            "repoId": self.repo_id,
            "branch": dict(self.branch),
            "createdAt": self.iso(self.created),
            "eventsUrl": f"{RUNS_PATH}/{self.run_id}/events",
            "cancelUrl": f"{RUNS_PATH}/{self.run_id}/cancel",
            "runtime": {"provider": "trigger", "runId": self.runtime_run_id},
            "error": self.script.error if status in TERMINAL else None,
            "status": status,
            "sandboxId": self.sandbox_id if self._sandbox_allocated(now) else None,
            "updatedAt": self.iso(self._updated(now)),
        }

    def started(self, now: float, *, replayed: bool) -> dict[str, Any]:
        """The run as POST /runs answers it: bare, with more ids and `replayed`."""
        view = self.detail(now)
        view.update(
            aiCallId=self.ai_call_id,
            sandboxRecordId=self.sandbox_record_id,
            rootDirectory=self.root_directory,
            replayed=replayed,
        )
        return view

    def _sandbox_allocated(self, now: float) -> bool:
        streaming_at = self.script.streaming_at
        return streaming_at is not None and now - self.created >= streaming_at

    def _updated(self, now: float) -> float:
        offset = now - self.created
        moments = [0.0, *(event.at for event in self.script.events if event.at <= offset)]
        for moment in (self.script.streaming_at, self.script.finished_at):
            if moment is not None and moment <= offset:
                moments.append(moment)
        return self.created + max(moments)

    def _add_heartbeats(self, offset: float) -> None:
        """A run that never ends gets a progress event every few seconds, up to the events cap."""
        start = self.script.heartbeat_from
        if start is None:
            return
        room = self.max_events - 4  # keep room for the cancel events
        while len(self.script.events) < room:
            at = start + self._next_heartbeat * HEARTBEAT_PERIOD
            if at > offset:
                return
            self.script.events.append(heartbeat_event(self._next_heartbeat, at))
            self._next_heartbeat += 1

    def _render(self, planned: PlannedEvent, index: int) -> dict[str, Any]:
        return {
            "id": self.event_ids(index),
            "type": planned.type,
            "toolName": planned.tool_name,
            "message": planned.message,
            "payload": sanitize_payload(planned.payload),
            "createdAt": self.iso(self.created + planned.at),
        }


def derived_uuid(*parts: object) -> str:
    """A version-4-shaped UUID determined by `parts` (seed, run number, ...): same seed, same ids."""
    digest = hashlib.sha256(":".join(map(str, ("mogplex-emulator", *parts))).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))
