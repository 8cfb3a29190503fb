"""A seeded storm of logical starts under mixed upstream faults, driven like impatient hosts drive a server.

Each logical start is one distinct request (its own prompt). Before its first call, faults of random kinds
are armed on POST /runs; the "host" calls start_run until it succeeds (as a model retries a failed tool
call), and sometimes calls it once more after success (as models do). Many starts run at once, so a fault
armed by one start is often taken by another: the mix is what matters, not who gets what.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import anyio

from tests.faults.support import RUNS_PATH
from tests.server.harness import Session, text_of

# (kind, weight): how often each fault is armed. Retry-After 0 lets the client's own backoff decide.
FAULT_MIX: tuple[tuple[str, int], ...] = (
    ("drop_after_commit", 4),
    ("html_502", 2),
    ("internal_500", 1),
    ("unavailable_503", 1),
    ("rate_limited_429", 1),
    ("delay", 2),
    ("hang", 1),
)


@dataclass
class StormOutcome:
    """What the host saw: the run each logical start ended with, and how hard it was to get there."""

    run_by_prompt: dict[str, str] = field(default_factory=dict)
    failed_prompts: list[str] = field(default_factory=list)
    tool_errors: int = 0
    replays_seen: int = 0
    repeat_calls: int = 0
    faults_armed: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{len(self.run_by_prompt)} started, {len(self.failed_prompts)} gave up, {self.tool_errors} tool errors "
            f"retried, {self.replays_seen} replays, {self.repeat_calls} repeated calls, faults armed "
            f"{dict(self.faults_armed)}"
        )


def prompt_for(seed: int, index: int) -> str:
    return f"Storm {seed}/{index}: fix flaky test number {index} in the parser module"


async def start_storm(
    s: Session,
    *,
    seed: int,
    starts: int,
    concurrency: int = 64,
    max_host_calls: int = 12,
    fresh_key_per_call: bool = False,
) -> StormOutcome:
    """Run `starts` logical starts; `fresh_key_per_call` models a broken host that makes a new key per try."""
    emu = s.emulator.emulator
    repos = [repo["id"] for repo in (await s.ok("list_repos", limit=10))["repos"]]
    outcome = StormOutcome()
    queue = list(range(starts))
    kinds = [kind for kind, _ in FAULT_MIX]
    weights = [weight for _, weight in FAULT_MIX]

    async def one(index: int) -> None:
        rng = random.Random(f"{seed}:{index}")
        for kind in rng.choices(kinds, weights, k=rng.choice((0, 1, 1, 2, 3))):
            delay = rng.uniform(0.05, 0.5) if kind == "delay" else 0.0
            emu.inject_fault(kind, method="POST", path=RUNS_PATH, delay=delay, retry_after=0)
            outcome.faults_armed[kind] += 1
        prompt = prompt_for(seed, index)
        arguments: dict[str, object] = {"repoId": rng.choice(repos), "prompt": prompt}
        if rng.random() < 0.3:
            arguments["harness"] = rng.choice(("codex", "claude-code"))
        for call in range(max_host_calls):
            if fresh_key_per_call:
                arguments["idempotencyKey"] = f"broken-{seed}-{index}-{call}"
            result = await s.call("start_run", **arguments)
            if not result.is_error:
                break
            outcome.tool_errors += 1
            assert "Traceback" not in text_of(result)
        else:
            outcome.failed_prompts.append(prompt)
            return
        content = result.structured_content
        assert content is not None
        outcome.run_by_prompt[prompt] = content["run"]["runId"]
        outcome.replays_seen += bool(content["replayed"])
        if rng.random() < 0.1:  # the model calls the same tool again after it succeeded
            outcome.repeat_calls += 1
            again = await s.call("start_run", **arguments)
            if not again.is_error and again.structured_content is not None:
                assert again.structured_content["run"]["runId"] == content["run"]["runId"] or fresh_key_per_call

    async def worker() -> None:
        while queue:
            await one(queue.pop(0))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return outcome
