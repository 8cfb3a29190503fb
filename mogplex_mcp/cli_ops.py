"""The HTTP server's operational limits: readiness check timeout, probe slots, the drain's flush and reserve.

Kept beside `cli.py` so the serve command gains one flag group and one call. Each limit has a flag and an
env var (the flag wins), validated here so a bad value is a configuration error before anything starts;
documented in docs/scale.md ("Probes and drain") and docs/http.md ("Limits").
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mogplex_mcp.config import ConfigError, clean_env_value

# The defaults, the same as readiness.CHECK_TIMEOUT_SECONDS, connections.PROBE_SLOTS and drain.py's
# FORCED_FLUSH_SECONDS / CLEANUP_RESERVE_SECONDS (not imported: this module loads before uvicorn; a test
# checks they agree).
MAX_PROBE_SLOTS = 1000


@dataclass(frozen=True)
class _Limit:
    flag: str
    env: str
    metavar: str
    default: float
    what: str


OPS_LIMITS: dict[str, _Limit] = {
    "readiness_timeout_seconds": _Limit(
        "--readiness-timeout", "MOGPLEX_READINESS_TIMEOUT_SECONDS", "SECONDS", 3.0,
        "/readyz: a check (journal, Redis) not answering within this long counts as failed",
    ),
    "probe_slots": _Limit(
        "--probe-slots", "MOGPLEX_PROBE_SLOTS", "N", 8,
        "connections past --max-connections that may only ask /healthz or /readyz (0: none)",
    ),
    "drain_flush_seconds": _Limit(
        "--drain-flush", "MOGPLEX_DRAIN_FLUSH_SECONDS", "SECONDS", 2.0,
        "on a forced exit, wait at most this long for start claims held in memory to be written",
    ),
    "drain_cleanup_seconds": _Limit(
        "--drain-cleanup-reserve", "MOGPLEX_DRAIN_CLEANUP_SECONDS", "SECONDS", 3.0,
        "of --grace-period, what is kept for closing the journal after calls in flight are cut off",
    ),
}  # fmt: skip


def _parse(dest: str, text: str) -> float:
    """A limit's value, or ValueError saying what it must be."""
    if dest == "probe_slots":
        if not re.fullmatch(r"[0-9]{1,4}", text.strip()) or int(text) > MAX_PROBE_SLOTS:
            raise ValueError(f"a whole number 0..{MAX_PROBE_SLOTS}, got {text[:20]!r}")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a positive number of seconds, got {text[:20]!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a positive number of seconds, got {text[:20]!r}")
    return value


def configure_ops(group: argparse._ArgumentGroup) -> None:
    for dest, limit in OPS_LIMITS.items():

        def parse(text: str, dest: str = dest) -> float:
            try:
                return _parse(dest, text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"expected {exc}") from None

        group.add_argument(
            limit.flag, dest=dest, type=parse, default=None, metavar=limit.metavar,
            help=f"{limit.what} (env {limit.env}; default: {limit.default:g})",
        )  # fmt: skip


def ops_options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The limits as `HttpOptions` fields: flag, else env var, else default. ConfigError for a bad env value."""
    values = os.environ if env is None else env
    found: dict[str, Any] = {}
    for dest, limit in OPS_LIMITS.items():
        value = getattr(args, dest, None)
        raw = clean_env_value(values.get(limit.env))
        if value is None and raw is not None:
            try:
                value = _parse(dest, raw)
            except ValueError as exc:
                raise ConfigError(f"{limit.env} must be {exc}") from None
        found[dest] = limit.default if value is None else value
    # Checked only when the reserve was set: with the default, a grace period under 3 s still works as before
    # (uvicorn gets at least 1 s, drain.uvicorn_grace).
    grace = getattr(args, "grace_period", None)
    reserve_set = args.drain_cleanup_seconds is not None or clean_env_value(
        values.get(OPS_LIMITS["drain_cleanup_seconds"].env)
    )
    if grace is not None and reserve_set and found["drain_cleanup_seconds"] >= grace:
        raise ConfigError(
            f"--drain-cleanup-reserve ({found['drain_cleanup_seconds']:g} s) must be less than --grace-period "
            f"({grace:g} s): the rest of the grace period is what calls in flight get to finish"
        )
    return found
