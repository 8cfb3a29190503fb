"""Run scenarios: what a simulated run does and when, as a script of timed events per flavour.

A prompt picks its scenario with a `[scenario:NAME]` marker; otherwise the emulator's default applies. A
`[say:TEXT]` marker makes the agent log TEXT once it is streaming (verbatim: it may be hostile markup, which is
how a test shows that a client renders event text as text).
Times are simulated seconds after the run was created (at speed 1, real seconds).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

SCENARIOS: tuple[str, ...] = (
    "success",
    "no_changes",
    "failure",
    "slow_start",
    "long",
    "endless",
    "cancel_race",
    "cancel_conflict",
    "queue_failure",
    "awaiting_input",
)
SCENARIO_MARKER = re.compile(r"\[scenario:([A-Za-z0-9_-]+)\]")
SAY_MARKER = re.compile(r"\[say:([^\]]{1,500})\]")

# A PAT an agent printed into a log line: upstream does not redact `mog_` tokens in `message`.
LEAKED_TOKEN = "mog_LeakedByAgent5Rq8Zt2Wy6"  # noqa: S105 - fake, never accepted by the emulator
HEARTBEAT_PERIOD = 2.0
LONG_RUN_STEP = 0.05
CancelBehaviour = Literal["normal", "race", "conflict"]

_FILES = (
    "src/auth.ts",
    "src/server.ts",
    "src/routes/runs.ts",
    "lib/session.py",
    "app/models.py",
    "README.md",
)


@dataclass(frozen=True)
class PlannedEvent:
    """One event of a script: when it appears and what it says (payload before sanitization)."""

    at: float
    type: str
    tool_name: str | None = None
    message: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Script:
    """A run's plan: status changes, outcome and events; `finished_at=None` never ends by itself."""

    streaming_at: float | None
    finished_at: float | None
    outcome: str
    error: str | None
    events: list[PlannedEvent]
    heartbeat_from: float | None = None
    cancel_behaviour: CancelBehaviour = "normal"
    awaiting_at: float | None = None  # from then on the agent waits for a person (status awaiting_input)


@dataclass(frozen=True)
class RunContext:
    """What a scenario may mention about its run."""

    flavor: str
    repo_full_name: str
    base_branch: str
    working_branch: str
    rng: random.Random
    long_run_events: int
    said: str | None = None
    event_style: str = "classic"


def said_in(prompt: str) -> str | None:
    """The text a `[say:TEXT]` marker in the prompt asks the agent to log, if any."""
    match = SAY_MARKER.search(prompt)
    return match.group(1) if match else None


def scenario_in(prompt: str) -> str | None:
    """The scenario named by a `[scenario:NAME]` marker in the prompt, if any."""
    match = SCENARIO_MARKER.search(prompt)
    return match.group(1) if match else None


class _Timeline:
    """Collects a script's events, spelled the way the flavour (and the event style) spells them."""

    def __init__(self, flavor: str, event_style: str = "classic") -> None:
        self.observed = flavor == "observed"
        self.newer = event_style == "newer"
        self.events: list[PlannedEvent] = []
        self._tool_calls = 0

    def add(
        self,
        at: float,
        kind: str,
        *,
        tool: str | None = None,
        message: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(PlannedEvent(at, kind, tool, message, payload or {}))

    def start(self, at: float) -> None:
        if self.observed:
            self.add(at - 0.5, "started", message="Run started")
            self.add(
                at, "status_changed", message="pending -> streaming", payload={"from": "pending", "to": "streaming"}
            )
        else:
            self.add(at, "stream_started", message="Agent started")

    def tool(self, at: float, name: str, message: str, payload: dict[str, Any], ok: bool = True) -> None:
        if self.newer:
            self._tool_calls += 1
            call = {"kind": "tool", "toolCallId": f"call_{self._tool_calls:04d}"}
            path = {"path": payload["path"]} if "path" in payload else {}
            self.add(at, "tool_started", tool=name, payload={**call, "state": "running", **path})
            self.add(at + 0.4, "tool_finished", tool=name, payload={**call, "state": "completed" if ok else "error"})
        elif self.observed:
            self.add(at, "tool_started", tool=name, payload=payload)
            self.add(at + 0.4, "tool_finished", tool=name, payload={**payload, "ok": ok})
        else:
            self.add(at, "tool_call", tool=name, message=message, payload={**payload, "ok": ok})

    def say(self, at: float, text: str) -> None:
        """The agent's words: in the newer style, streamed as a few `assistant_delta` logs."""
        if not self.newer:
            return
        words = text.split(" ")
        step = max(1, len(words) // 3)
        chunks = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        for index, chunk in enumerate(chunks):
            prefix = "" if index == 0 else " "
            self.add(at + index * 0.05, "log", message=prefix + chunk, payload={"kind": "assistant_delta"})

    def delivery(self, at: float, ctx: RunContext, changed: bool) -> None:
        url = f"https://github.com/{ctx.repo_full_name}/pull/{ctx.rng.randint(10, 999)}" if changed else None
        message = "Pushed branch and opened pull request" if changed else "No changes to deliver"
        payload = {
            "stage": "git_delivery",
            "changed": changed,
            "pull_request_url": url,
            "branch": ctx.working_branch if changed else None,
        }
        self.add(at, "log", message=message, payload=payload)

    def finish(self, at: float, exit_code: int) -> None:
        failure = None if exit_code == 0 else "agent_exit_nonzero"
        kind = "finished" if exit_code == 0 else "failed"
        self.add(
            at,
            kind,
            message=f"Agent exited with code {exit_code}",
            payload={"exit_code": exit_code, "failure_code": failure},
        )


def _setup(tl: _Timeline, ctx: RunContext, start: float) -> None:
    """Checkout and CLI setup: the second log leaks a PAT in its message and secrets in its payload."""
    tl.add(
        start + 1.0,
        "log",
        message=f"Cloning {ctx.repo_full_name} at {ctx.base_branch}",
        payload={"stage": "checkout", "repository": ctx.repo_full_name, "branch": ctx.base_branch},
    )
    secrets = {
        "stage": "setup",
        "command": "mogplex whoami",
        "env": {"MOGPLEX_TOKEN": LEAKED_TOKEN, "GITHUB_TOKEN": "ghp_FakeGithubToken1234567890"},
        "api_key": "sk-emulator-fake-0123456789",
        "output": "curl -H 'Authorization: Bearer eyJemulator.fake.jwt' /api/me -> 200",
    }
    tl.add(start + 1.5, "log", message=f"Authenticated the Mogplex CLI with {LEAKED_TOKEN}", payload=secrets)


def _test_run_payload(ok: bool) -> dict[str, Any]:
    """A test command's result: long output, many files, deep nesting (all capped by sanitization)."""
    return {
        "command": "npm test",
        "exit_code": 0 if ok else 1,
        "output": ("PASS tests/auth.test.ts\n" if ok else "FAIL tests/auth.test.ts\n") * 120,
        "files": [f"tests/unit/case_{index:02d}.test.ts" for index in range(30)],
        "summary": {"suites": {"auth": {"passed": 12, "failed": 0 if ok else 1}}},
    }


def _work(tl: _Timeline, ctx: RunContext, start: float, *, changes: bool, tests_pass: bool = True) -> float:
    """The agent's tool activity; returns when it is done."""
    first, second = ctx.rng.sample(_FILES, 2)
    _setup(tl, ctx, start)
    tl.say(start + 2.5, f"Let me look at {first} first.")
    tl.tool(start + 3.0, "read_file", f"Reading {first}", {"path": first})
    if changes:
        tl.tool(start + 5.0, "edit_file", f"Editing {first}", {"path": first})
    tl.tool(start + 7.0, "run_command", "Running npm test", _test_run_payload(tests_pass), ok=tests_pass)
    if not tests_pass:
        return start + 8.0
    if changes:
        tl.tool(start + 9.0, "edit_file", f"Editing {second}", {"path": second})
        tl.say(start + 10.0, f"I changed {first} and {second}; the tests pass now.")
    else:
        tl.say(start + 10.0, "Nothing needed changing: the tests already pass.")
    return start + 11.0


def _finished_run(ctx: RunContext, start: float, *, changes: bool = True) -> Script:
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.start(start)
    done = _work(tl, ctx, start, changes=changes)
    tl.delivery(done, ctx, changed=changes)
    tl.finish(done + 1.0, 0)
    return Script(start, done + 1.0, "success", None, tl.events)


def _failure(ctx: RunContext) -> Script:
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.start(2.0)
    done = _work(tl, ctx, 2.0, changes=True, tests_pass=False)
    tl.finish(done, 1)
    return Script(2.0, done, "failed", "Agent exited with code 1", tl.events)


def _long(ctx: RunContext, max_events: int) -> Script:
    target = max(10, min(ctx.long_run_events, max_events - 5))
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.start(2.0)
    _setup(tl, ctx, 2.0)
    at, step = 2.0, 0
    while len(tl.events) < target - 2:
        at, step = at + LONG_RUN_STEP, step + 1
        path = _FILES[step % len(_FILES)]
        if step % 5 == 0 and len(tl.events) < target - 3:
            tl.tool(at, "read_file", f"Reading {path}", {"path": path, "step": step})
        else:
            tl.add(at, "log", message=f"Working on step {step}", payload={"stage": "agent", "step": step})
    tl.delivery(at + 0.5, ctx, changed=True)
    tl.finish(at + 1.0, 0)
    return Script(2.0, at + 1.0, "success", None, tl.events)


def _endless(ctx: RunContext) -> Script:
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.start(2.0)
    _setup(tl, ctx, 2.0)
    return Script(2.0, None, "success", None, tl.events, heartbeat_from=4.0 + HEARTBEAT_PERIOD)


def _awaiting_input(ctx: RunContext) -> Script:
    """The agent asks a question and waits for a person (who answers in Mogplex's own UI): never ends by itself."""
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.start(2.0)
    _setup(tl, ctx, 2.0)
    tl.say(4.5, "Should I keep the old endpoint for backward compatibility?")
    question = {"stage": "agent", "question": "Keep the old endpoint?"}
    if tl.observed:
        question = {"from": "streaming", "to": "awaiting_input"}
        tl.add(5.0, "status_changed", message="streaming -> awaiting_input", payload=question)
    else:
        tl.add(5.0, "log", message="Waiting for input: keep the old endpoint?", payload=question)
    return Script(2.0, None, "success", None, tl.events, awaiting_at=5.0)


def _queue_failure(ctx: RunContext) -> Script:
    tl = _Timeline(ctx.flavor, ctx.event_style)
    tl.add(
        0.0,
        "failed",
        message="Failed to queue run",
        payload={"exit_code": None, "failure_code": "queue_failed"},
    )
    return Script(None, 0.0, "failed", "Failed to queue run", tl.events)


def build_script(scenario: str, ctx: RunContext, *, max_events: int) -> Script:
    """The script of one run of `scenario` (a name from SCENARIOS), its events in time order."""
    script = _script(scenario, ctx, max_events)
    if ctx.said is not None and script.streaming_at is not None:
        script.events.append(PlannedEvent(script.streaming_at + 0.5, "log", None, ctx.said, {"stage": "agent"}))
    script.events.sort(key=lambda event: event.at)  # stable: same-time events keep their order
    return script


def _script(scenario: str, ctx: RunContext, max_events: int) -> Script:
    if scenario in ("success", "cancel_conflict"):
        script = _finished_run(ctx, 2.0)
        script.cancel_behaviour = "conflict" if scenario == "cancel_conflict" else "normal"
        return script
    if scenario == "no_changes":
        return _finished_run(ctx, 2.0, changes=False)
    if scenario == "slow_start":
        return _finished_run(ctx, 30.0)
    if scenario == "cancel_race":
        script = _finished_run(ctx, 8.0)
        script.cancel_behaviour = "race"
        return script
    builders = {
        "failure": _failure,
        "endless": _endless,
        "queue_failure": _queue_failure,
        "awaiting_input": _awaiting_input,
    }
    if scenario == "long":
        return _long(ctx, max_events)
    if scenario not in builders:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    return builders[scenario](ctx)


def heartbeat_event(index: int, at: float) -> PlannedEvent:
    """The `index`-th progress event of a run that never ends by itself."""
    return PlannedEvent(at, "log", None, f"Still working (step {index + 1})", {"stage": "agent", "step": index + 1})


def cancel_events(flavor: str, requested_at: float, settled_at: float, *, race: bool) -> list[PlannedEvent]:
    """What a cancel request adds: the request, then `cancelled` (or the race's `failed`)."""
    requested = PlannedEvent(requested_at, "cancel_requested", None, "Cancellation requested", {})
    if race:
        payload = {"exit_code": None, "failure_code": "ai_call_not_pending"}
        return [requested, PlannedEvent(settled_at, "failed", None, "ai_call is not pending", payload)]
    return [requested, PlannedEvent(settled_at, "cancelled", None, "Run cancelled", {"by": "api"})]
