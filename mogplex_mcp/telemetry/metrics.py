"""Prometheus metrics: the `Recorder` that counts what the hooks report, plus gauges read at scrape time.

Why `prometheus_client` rather than OpenTelemetry metrics with a Prometheus exporter: the exporter is
itself built on `prometheus_client`, so the OTel route adds the SDK on top of the same library for the same
text; `prometheus_client` alone is pure Python with no dependencies, its parser lets the tests read what a
real scraper reads, and it is imported only when `--metrics-port` is given.

Cardinality is bounded by construction: labels are tool names (unknown names become "unknown"), route
templates (`/runs/{runId}`), HTTP statuses, fixed outcome and operation words. Nothing names a token, a
fingerprint, a run or a user: per-token state (sessions, pacer budgets) is exported only in aggregate.
Every metric is listed, with its meaning, in docs/operations.md (a test keeps the two in step).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mogplex_mcp import __version__
from mogplex_mcp.telemetry.hooks import Recorder

__all__ = ["CONTENT_TYPE", "LIVE_METRICS", "PrometheusRecorder"]

# No `*_created` series: they double the series count for a start time no dashboard here uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "mogplex_mcp_"

_TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RETRY_AFTER_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 3600)
_REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
OAUTH_OUTCOMES = frozenset({"ok", "denied", "invalid", "failed"})
_WORD = re.compile(r"[^a-z0-9_]+")

# Read at scrape time from live state the server registers with `watch()`: (kind, help text).
LIVE_METRICS: dict[str, tuple[str, str]] = {
    "http_sessions_open": ("gauge", "MCP sessions open (handshake era; stateless and modern requests have none)."),
    "http_sessions_evicted": ("counter", "Idle MCP sessions ended to make room under the session caps."),
    "http_sessions_refused": ("counter", "New MCP sessions refused because every session that could go was busy."),
    "http_unauthenticated_requests": ("counter", "Requests to /mcp refused with 401 (no or malformed bearer)."),
    "http_connections_open": ("gauge", "HTTP connections open to the MCP port."),
    "http_event_streams_open": (
        "gauge",
        "Server-sent event streams open to MCP clients (GET streams and streamed answers).",
    ),
    "upstream_requests_in_flight": ("gauge", "Requests to Mogplex in flight (the request pool)."),
    "upstream_event_streams_open": ("gauge", "Event streams open to Mogplex (the stream pool, used by followers)."),
    "runs_followed": ("gauge", "Runs this process is following right now (polling or streaming them)."),
    "followers_held": ("gauge", "Followers held in memory, following or finished and kept for reads."),
    "follow_leases_held": (
        "gauge",
        "Follow leases this replica holds in Redis (it leads those runs for all replicas).",
    ),
    "pacer_tokens": ("gauge", "Tokens with a follower request budget in this process."),
    "pacer_tokens_exhausted": ("gauge", "Tokens whose follower budget is used up (or paused by a 429) right now."),
    "pacer_budget_remaining_min": (
        "gauge",
        "The smallest follower budget left among tokens (requests in the sliding minute).",
    ),
}


def label_word(value: str, *, limit: int = 40) -> str:
    """A label value from a fixed vocabulary: lowercase words joined by `_`, cut to `limit` characters."""
    return _WORD.sub("_", value.strip().lower()).strip("_")[:limit] or "unknown"


class _LiveMetrics(Collector):
    """Yields each watched source's current value (gauges and counters the code already keeps)."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], float]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, source in list(self.sources.items()):
            kind, doc = LIVE_METRICS[name]
            family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            yield family(PREFIX + name, doc, value=float(source()))


class PrometheusRecorder(Recorder):
    """The metrics of one server process, in a registry of its own (so tests can make a fresh one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge(PREFIX + "build_info", "The running version (always 1).", ["version"], registry=r).labels(
            __version__
        ).set(1)
        self._define_call_metrics(r)
        self._define_store_metrics(r)
        self._live = _LiveMetrics()
        r.register(self._live)

    def _define_call_metrics(self, r: CollectorRegistry) -> None:
        """Tool calls and the requests they send to Mogplex."""
        self._tool_calls = Counter(
            PREFIX + "tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self._tool_seconds = Histogram(
            PREFIX + "tool_call_duration_seconds",
            "How long tool calls took, by tool and outcome.",
            ["tool", "outcome"],
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self._upstream = Counter(
            PREFIX + "upstream_requests",
            "Requests sent to Mogplex by method, route template and status (or 'error': no answer, 'cancelled').",
            ["method", "route", "status"],
            registry=r,
        )
        self._upstream_seconds = Histogram(
            PREFIX + "upstream_request_duration_seconds",
            "Time from sending a request to Mogplex to its answer's headers.",
            ["method", "route"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self._retry_after = Histogram(
            PREFIX + "upstream_retry_after_seconds",
            "The Retry-After of Mogplex's 429 answers.",
            buckets=_RETRY_AFTER_BUCKETS,
            registry=r,
        )
        self._token_refused = Counter(
            PREFIX + "upstream_rejected_token_refusals",
            "Calls refused without sending: Mogplex answered 401 to the same token moments ago.",
            registry=r,
        )
        self._oversized = Counter(
            PREFIX + "upstream_oversized_answers",
            "Mogplex answers larger than the size cap, not read further.",
            ["route"],
            registry=r,
        )

    def _define_store_metrics(self, r: CollectorRegistry) -> None:
        """The journal, Redis and OAuth sign-ins."""
        self._journal_fallbacks = Counter(
            PREFIX + "journal_fallbacks",
            "Times the journal file could not be used and an operation fell back to this process's memory.",
            ["operation"],
            registry=r,
        )
        self._redis = Counter(
            PREFIX + "redis_commands",
            "Redis operations by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self._redis_seconds = Histogram(
            PREFIX + "redis_command_duration_seconds",
            "How long Redis operations took (failures included).",
            ["operation"],
            buckets=_REDIS_BUCKETS,
            registry=r,
        )
        self._oauth_sign_ins = Counter(PREFIX + "oauth_sign_ins", "OAuth sign-ins by outcome.", ["outcome"], registry=r)
        self._oauth_refreshes = Counter(
            PREFIX + "oauth_refreshes", "OAuth token refreshes by outcome.", ["outcome"], registry=r
        )

    # --- live sources ----------------------------------------------------------------------------

    def watch(self, name: str, source: Callable[[], float]) -> None:
        """Export `source()` as the live metric `name` (one of LIVE_METRICS) at every scrape."""
        if name not in LIVE_METRICS:
            raise ValueError(f"{name!r} is not a documented live metric (see LIVE_METRICS)")
        self._live.sources[name] = source

    def unwatch(self, *names: str) -> None:
        for name in names:
            self._live.sources.pop(name, None)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # --- the hooks -------------------------------------------------------------------------------

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self._tool_calls.labels(tool, outcome).inc()
        self._tool_seconds.labels(tool, outcome).observe(seconds)

    def upstream_response(
        self, method: str, route: str, status: str, seconds: float, retry_after: float | None
    ) -> None:
        self._upstream.labels(method, route, status).inc()
        self._upstream_seconds.labels(method, route).observe(seconds)
        if status == "429" and retry_after is not None:
            self._retry_after.observe(retry_after)

    def upstream_token_refused(self) -> None:
        self._token_refused.inc()

    def upstream_oversized(self, route: str) -> None:
        self._oversized.labels(route).inc()

    def journal_fallback(self, operation: str) -> None:
        self._journal_fallbacks.labels(label_word(operation)).inc()

    def redis_command(self, operation: str, seconds: float, ok: bool) -> None:
        word = label_word(operation)
        self._redis.labels(word, "ok" if ok else "error").inc()
        self._redis_seconds.labels(word).observe(seconds)

    def oauth_sign_in(self, outcome: str) -> None:
        self._oauth_sign_ins.labels(_oauth_outcome(outcome)).inc()

    def oauth_refresh(self, outcome: str) -> None:
        self._oauth_refreshes.labels(_oauth_outcome(outcome)).inc()


def _oauth_outcome(outcome: str) -> str:
    """One of OAUTH_OUTCOMES ("other" for anything else): the caller's words must not grow the label set."""
    word = label_word(outcome)
    return word if word in OAUTH_OUTCOMES else "other"
