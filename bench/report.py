"""Results and their rendering: rows with targets beside them, a markdown table, and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One measured number. `met` is None when the row has no target (context, not a goal)."""

    metric: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "**MISS**")


@dataclass
class Section:
    """One benchmark's outcome: its rows, how it was measured, and notes (every miss gets one)."""

    key: str
    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(metric, value, target, met))

    @property
    def misses(self) -> list[Row]:
        return [row for row in self.rows if row.met is False]


def table(sections: Sequence[Section]) -> str:
    lines = ["| Benchmark | Metric | Result | Target | |", "|---|---|---|---|---|"]
    for section in sections:
        for row in section.rows:
            lines.append(f"| {section.title} | {row.metric} | {row.value} | {row.target} | {row.verdict} |")
    return "\n".join(lines)


def machine() -> list[str]:
    """What the numbers were measured on, and how busy it was."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"{os.cpu_count()} × {cpu}, {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.implementation.name}), mcp {_version('mcp')}, "
        f"httpx2 {_version('httpx2')}, uvicorn {_version('uvicorn')}",
        f"load average (1/5/15 min) when the run ended: {load}",
    ]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mogplex_mcp"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out + (" (with uncommitted changes in mogplex_mcp/)" if dirty else "")


def document(sections: Sequence[Section], *, command: str, started: str, duration_s: float, quick: bool) -> str:
    """The whole docs/benchmarks.md."""
    out = [
        "# Benchmarks",
        "",
        "Written by `uv run python -m bench` — do not edit by hand; rerun it. "
        "Benchmarks are not tests: nothing here is asserted in CI.",
        "",
        "## This run",
        "",
        f"- command: `{command}`" + (" (quick mode: fewer samples, shorter windows)" if quick else ""),
        f"- started {started}, took {duration_s:.0f} s; code at {git_revision()}",
        *(f"- {line}" for line in machine()),
        "- the machine is shared: other engineers' test suites ran on the same 2 cores during the run, so "
        "absolute numbers are noisy; comparisons are made side by side within one run (interleaved samples, "
        "same moment, same load) and reported as medians and p99s",
        "",
        "## Results",
        "",
        table(sections),
        "",
        "## How to reproduce",
        "",
        "```sh",
        "uv sync",
        "uv run python -m bench                      # all seven, writes docs/benchmarks.md (about 5 minutes)",
        "uv run python -m bench --quick              # a smoke run: fewer samples, shorter windows",
        "uv run python -m bench --only cold_start,per_call --no-write   # a subset, table on stdout only",
        "```",
        "",
        "Everything talks to 127.0.0.1 only: the upstream is the project's emulator of the Mogplex v1 API, "
        "run in a process of its own (`bench/emulator_proc.py`) with counters of the requests it receives; "
        "the server under test is the real `python -m mogplex_mcp serve` in a child process, so its CPU "
        "time and RSS are read from `/proc/<pid>` without the benchmark's own load mixed in.",
        "",
        "## Method and notes",
        "",
    ]
    for section in sections:
        out += [f"### {section.title}", "", section.method, ""]
        out += [f"- {note}" for note in section.notes]
        if section.notes:
            out.append("")
    return "\n".join(out).rstrip() + "\n"
