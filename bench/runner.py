"""The benchmark runner: which benchmarks, how big, and where the results go.

uv run python -m bench                    # all seven, full size; writes docs/benchmarks.md
uv run python -m bench --quick            # fewer samples, shorter windows; prints only
uv run python -m bench --only per_call,memory --no-write
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio

from bench import (
    cold_start,
    definitions,
    fanout,
    gateway,
    hardening,
    journal_stress,
    memory,
    oauth,
    per_call,
    redis_keys,
    rolling,
    scale,
    telemetry,
    throughput,
    viewer_size,
)
from bench.report import Section, document, table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Size:
    """How big each benchmark runs: the full run publishes, quick mode only checks that everything works."""

    cold_samples: int
    calls: int
    fanout_seconds: float
    naive_seconds: float
    with_stream: bool
    memory_runs: int
    memory_checkpoints: tuple[int, ...]
    throughput_seconds: float
    flood_requests: int
    gateway_sessions: int
    scale_starts: int = 1002
    scale_throughput_seconds: float = 4.0  # per window
    scale_throughput_rounds: int = 4  # windows per side (1 and 2 replicas)
    journal_slots: int = 12  # server processes alive at once on one journal
    journal_seconds: float = 90.0
    sign_ins: int = 200
    rolling_people: int = 8  # clients working through nginx during the rolling restarts
    rolling_passes: int = 2  # times every replica is restarted
    hardening_flood: int = 300
    hardening_bodies: int = 150


FULL = Size(15, 300, 65.0, 20.0, True, 1000, (100, 250, 500, 750, 1000), 10.0, 10_000, 1000)
QUICK = Size(4, 40, 12.0, 5.0, False, 250, (100, 250), 3.0, 1000, 100, 99, 1.0, 1, 4, 15.0, 16, 4, 1, 60, 50)


def benchmarks(size: Size) -> dict[str, Callable[[], Awaitable[Section]]]:
    async def cold() -> Section:
        return await anyio.to_thread.run_sync(cold_start.run, size.cold_samples)

    return {
        "cold_start": cold,
        "per_call": lambda: per_call.run(size.calls),
        "telemetry": lambda: telemetry.run(size.calls),
        "fanout": lambda: fanout.run(
            seconds=size.fanout_seconds, naive_seconds=size.naive_seconds, with_stream=size.with_stream
        ),
        "memory": lambda: memory.run(size.memory_runs, size.memory_checkpoints),
        "throughput": lambda: throughput.run(size.throughput_seconds),
        "viewer_size": viewer_size.run,
        "scale": lambda: scale.run(size.scale_starts, size.scale_throughput_seconds, size.scale_throughput_rounds),
        "gateway": lambda: gateway.run(size.flood_requests, size.gateway_sessions),
        "definitions": definitions.run,
        "journal_stress": lambda: journal_stress.run(size.journal_slots, size.journal_seconds),
        "oauth": lambda: oauth.run(size.calls, size.sign_ins),
        "redis_keys": redis_keys.run,
        "rolling": lambda: rolling.run(size.rolling_people, size.rolling_passes),
        "hardening": lambda: hardening.run(size.hardening_flood, size.hardening_bodies),
    }


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter windows (a smoke run)")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated subset of: cold_start, per_call, telemetry, fanout, memory, throughput, viewer_size, "
        "gateway, scale, definitions, journal_stress, oauth, rolling, redis_keys, hardening",
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only; do not write the docs")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the markdown (default {DOCS.relative_to(DOCS.parent.parent)}, written only by a "
        "full run of all seven unless this is given)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse(arguments)
    # The SDK client logs tracebacks when a notification reaches a session that is closing: noise here.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("mcp").setLevel(logging.CRITICAL)
    size = QUICK if args.quick else FULL
    available = benchmarks(size)
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(available)}", file=sys.stderr)
        return 2
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    sections: list[Section] = []
    for name in chosen:
        print(f"--- {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        sections.append(anyio.run(available[name]))
        print(f"--- {name}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    duration = time.monotonic() - started
    print(table(sections))
    complete = not args.quick and not args.only
    output = args.output or (DOCS if complete else None)
    if output is not None and not args.no_write:
        command = "uv run python -m bench" + (
            ""
            if argv is None and len(sys.argv) == 1
            else " " + shlex.join(sys.argv[1:] if argv is None else list(argv))
        )
        text = document(sections, command=command, started=started_at, duration_s=duration, quick=args.quick)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(f"\nwrote {output}", file=sys.stderr)
    misses = [f"{section.title}: {row.metric}" for section in sections for row in section.misses]
    if misses:
        print("\nmissed targets:\n  " + "\n  ".join(misses), file=sys.stderr)
    return 0
