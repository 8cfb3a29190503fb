"""Measuring tools: summary statistics, and a process's CPU time and memory read from /proc (Linux)."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile, linear between closest ranks (p99 of 200 samples sits between the 2nd and 3rd worst)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Median, p99 and count of a list of samples (seconds or milliseconds: whatever was given)."""

    median: float
    p99: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(median(values), percentile(values, 99), len(values))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" that ends the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size now, in MiB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The highest resident set size the process has had, in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (all threads' children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            found.extend(int(child) for child in children.read_text().split())
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_child(marker: str, *, besides: set[int] | frozenset[int] = frozenset()) -> int:
    """The pid of this process's child (not in `besides`) whose command line contains `marker`."""
    matches = [
        pid for pid in children_of(os.getpid()) if pid not in besides and any(marker in part for part in cmdline(pid))
    ]
    if len(matches) != 1:
        raise LookupError(f"expected one child process running {marker!r}, found {matches}")
    return matches[0]
