"""The emulator's memory: runs (bounded, oldest evicted first) and the Idempotency-Keys (per user) that name them."""

from __future__ import annotations

import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mogplex_mcp.emulator.config import DEMO_USER, EmulatorConfig
from mogplex_mcp.emulator.runs import Run, derived_uuid
from mogplex_mcp.emulator.scenarios import RunContext, build_script, said_in
from mogplex_mcp.emulator.validation import RequestInvalid, StartRequest

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class KeyEntry:
    """What an Idempotency-Key was first used for."""

    fingerprint: str
    run_id: str


class RunStore:
    """Runs by id, oldest first, at most `config.max_runs`; keys never expire while their run is kept.

    Idempotency-Keys are scoped per user: the same key from two owners names two independent runs.
    """

    def __init__(self, config: EmulatorConfig, iso: Callable[[float], str]) -> None:
        self.config = config
        self.iso = iso
        self.lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._keys: dict[tuple[str, str], KeyEntry] = {}  # (owner, key) -> entry
        self._keys_by_run: dict[str, tuple[str, str]] = {}
        self._created = 0

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id.lower())

    def key(self, key: str, owner: str = DEMO_USER) -> KeyEntry | None:
        return self._keys.get((owner, key))

    def run_ids(self) -> list[str]:
        with self.lock:
            return list(self._runs)

    def runs(self) -> list[Run]:
        with self.lock:
            return list(self._runs.values())

    def create(
        self,
        request: StartRequest,
        repo: dict[str, Any],
        scenario: str,
        key: str,
        now: float,
        owner: str = DEMO_USER,
    ) -> Run:
        """Create `owner`'s run and bind their `key` to it (one atomic step: no await in between)."""
        seq = self._created
        base, working = resolve_branches(request, repo, derived_uuid(self.config.seed, seq, "branch"), now, self.iso)
        rng = random.Random(f"{self.config.seed}:{seq}:script")
        context = RunContext(
            self.config.flavor,
            str(repo["full_name"]),
            base,
            working,
            rng,
            self.config.long_run_events,
            said=said_in(request.prompt),
            event_style=self.config.event_style,
        )
        script = build_script(scenario, context, max_events=self.config.max_events_per_run)
        run = Run(
            run_id=derived_uuid(self.config.seed, seq, "run"),
            ai_call_id=derived_uuid(self.config.seed, seq, "ai-call"),
            sandbox_record_id=derived_uuid(self.config.seed, seq, "sandbox-record"),
            sandbox_id="vsb_" + _base62(rng, 12),
            runtime_run_id="run_" + _base62(rng, 20),
            repo_id=str(repo["id"]),
            harness=request.harness,
            branch={"base": base, "working": working, "createBranch": request.create_branch},
            root_directory=request.root_directory or repo.get("root_directory"),
            created=now,
            scenario=scenario,
            script=script,
            event_ids=lambda index: derived_uuid(self.config.seed, seq, "event", index),
            iso=self.iso,
            max_events=self.config.max_events_per_run,
            owner=owner,
        )
        with self.lock:
            self._created += 1
            self._runs[run.run_id] = run
            self._keys[(owner, key)] = KeyEntry(request.fingerprint(), run.run_id)
            self._keys_by_run[run.run_id] = (owner, key)
            self._evict()
        return run

    def reset(self) -> None:
        with self.lock:
            self._runs.clear()
            self._keys.clear()
            self._keys_by_run.clear()
            self._created = 0

    def _evict(self) -> None:
        while len(self._runs) > self.config.max_runs:
            old_id, _ = self._runs.popitem(last=False)
            old_key = self._keys_by_run.pop(old_id, None)
            if old_key is not None:
                self._keys.pop(old_key, None)


def resolve_branches(
    request: StartRequest, repo: dict[str, Any], salt: str, now: float, iso: Callable[[float], str]
) -> tuple[str, str]:
    """(base, working): base from the request, else the repo default, else main; working generated if needed."""
    base = request.base_branch or repo.get("default_branch") or "main"
    working = request.working_branch
    if working is None:
        working = generated_branch(request.prompt, iso(now)[:10], salt) if request.create_branch else base
    if request.create_branch and working == base:
        raise RequestInvalid("workingBranch must differ from baseBranch when createBranch is true")
    return base, working


def generated_branch(prompt: str, day: str, salt: str) -> str:
    """`mogplex/run/<date>/<slug>-<4 hex>`, the way the service names a branch it creates."""
    prompt = re.sub(r"\[(?:scenario|say):[^\]]*\]", " ", prompt)
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:4]
    slug = "-".join(words)[:40].strip("-") or "task"
    return f"mogplex/run/{day}/{slug}-{salt[:4]}"


def _base62(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_BASE62) for _ in range(length))


def iso_clock(wall_origin: float, clock_origin: float, per_second: float = 1.0) -> Callable[[float], str]:
    """Map emulator-clock seconds to ISO-8601 UTC (ms), anchored at a wall-clock moment.

    `per_second` is how many clock seconds pass per wall second, so a sped-up default clock still stamps
    real times (never in the future); an injected clock's seconds are taken as they are.
    """

    def iso(moment: float) -> str:
        when = datetime.fromtimestamp(wall_origin + (moment - clock_origin) / per_second, tz=UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

    return iso
