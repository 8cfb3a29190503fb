"""serve's flag groups for the shared HTTP server's limits: gateway budgets, Redis budgets, metrics.

Each flag has a default, an env var where the setting has one, and a row in the docs (docs/http.md,
docs/scale.md, docs/operations.md). Validators here turn a bad value into argparse's clear error.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from mogplex_mcp.config import COUNT_SETTINGS, REDIS_SECONDS_SETTINGS, Settings


def configure_metrics(group: argparse._ArgumentGroup) -> None:
    """Prometheus metrics on a port of their own: off unless asked, loopback unless told otherwise."""
    group.add_argument(
        "--metrics-port",
        type=port_number,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics, apart from the MCP port (default: off)",
    )
    group.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the metrics port binds; MCP callers cannot reach it unless you open it (default: %(default)s)",
    )


REDIS_FLAGS = {
    "redis_timeout_seconds": ("--redis-timeout", "one Redis command, connecting included"),
    "redis_read_timeout_seconds": ("--redis-read-timeout", "a read the journal can answer instead"),
    "redis_call_budget_seconds": ("--redis-call-budget", "all Redis commands of one tool call together"),
    "redis_breaker_seconds": ("--redis-breaker", "after a timeout, Redis is not asked for this long"),
}


REDIS_BYTE_FLAGS = {
    "redis_feed_run_bytes": ("--redis-feed-run-bytes", "most bytes one run's feed holds in Redis"),
    "redis_feed_token_bytes": ("--redis-feed-token-bytes", "most feed bytes one token publishes per hour"),
}


def configure_redis_limits(group: argparse._ArgumentGroup) -> None:
    """How long Redis may take, and what run feeds may hold there; each flag also has its env var."""
    for dest, (flag, what) in REDIS_FLAGS.items():
        env = REDIS_SECONDS_SETTINGS[dest]
        default = Settings.__dataclass_fields__[dest].default
        group.add_argument(
            flag, dest=dest, type=positive(float), default=None, metavar="SECONDS",
            help=f"{what} (env {env}; default: {default:g})",
        )  # fmt: skip
    for dest, (flag, what) in REDIS_BYTE_FLAGS.items():
        env = COUNT_SETTINGS[dest]
        size: int = getattr(Settings, dest)
        group.add_argument(
            flag, dest=dest, type=positive(int), default=None, metavar="BYTES",
            help=f"{what} (env {env}; default: {size // 1024 // 1024} MB)",
        )  # fmt: skip


def configure_gateway_limits(group: argparse._ArgumentGroup) -> None:
    """The gateway's limits: sessions per token and in all, idle expiry, connections, header and body deadlines."""
    group.add_argument(
        "--max-sessions-per-token",
        type=positive(int),
        default=32,
        metavar="N",
        help="open MCP sessions per token; more evict its oldest idle one (default: %(default)s)",
    )
    group.add_argument(
        "--max-sessions",
        type=positive(int),
        default=1000,
        metavar="N",
        help="open MCP sessions in all; more evict an idle one, never-used first (default: %(default)s)",
    )
    group.add_argument(
        "--session-idle-timeout",
        type=positive(float),
        default=10.0,
        metavar="MINUTES",
        help="end a session after this long without a request or open stream (default: %(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=positive(int),
        default=1000,
        metavar="N",
        help="open HTTP connections; more displace the oldest idle one (default: %(default)s)",
    )
    group.add_argument(
        "--header-timeout",
        type=positive(float),
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete in time (default: %(default)s)",
    )
    group.add_argument(
        "--body-timeout",
        type=positive(float),
        default=30.0,
        metavar="SECONDS",
        help="close a connection whose request body is not complete this long after its headers (default: %(default)s)",
    )
    group.add_argument(
        "--grace-period",
        type=positive(float),
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, drain for at most this long, then exit regardless (default: %(default)s)",
    )
    group.add_argument(
        "--max-body-bytes",
        type=positive(int),
        default=1024 * 1024,
        metavar="BYTES",
        help="largest request body; 413 beyond (default: %(default)s, room for the longest prompt)",
    )
    group.add_argument(
        "--max-body-bytes-per-client",
        type=positive(int),
        default=8 * 1024 * 1024,
        metavar="BYTES",
        help="request-body bytes in flight per client address; 429 beyond (default: %(default)s)",
    )
    group.add_argument(
        "--max-body-bytes-in-flight",
        type=positive(int),
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="request-body bytes in flight in all; 503 beyond (default: %(default)s)",
    )
    for what, default, beyond in (
        ("sessions-per-client", 16, "evicts its oldest idle one, else 429"),
        ("sessions", 128, "evicts an idle one, else 503"),
        ("requests-per-client", 32, "429"),
        ("requests", 128, "503"),
    ):
        group.add_argument(
            f"--max-unverified-{what}",
            type=positive(int),
            default=default,
            metavar="N",
            help=f"{what.replace('-', ' ')} of tokens Mogplex has not accepted yet; {beyond} (default: %(default)s)",
        )


def port_number(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:  # ASCII digits: "²".isdigit() is True
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text[:20]!r}")
    return int(text)


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse
