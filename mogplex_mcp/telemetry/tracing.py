"""Traces: spans around upstream calls, the journal and Redis, and the W3C `traceparent` sent to Mogplex.

The OpenTelemetry API comes with `mcp` (the SDK wraps every MCP request in a SERVER span) and costs next to
nothing without an SDK: spans are then non-recording and no header is sent. `configure()` installs the SDK
with an OTLP/HTTP exporter when the standard `OTEL_*` variables name an endpoint — the `otel` extra.

Span attributes are fixed words and route templates: never a token, a prompt, event text or an error
message (upstream error text can quote what a user sent), only the error's class name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mogplex_mcp import __version__
from mogplex_mcp.config import ConfigError

__all__ = ["SpanKind", "StatusCode", "configure", "inject_traceparent", "span", "trace_id_hex"]

# traceparent/tracestate only: the default propagator would also forward W3C baggage, which a caller
# controls (it arrives in MCP `_meta`) and which is nobody's business upstream.
_W3C = TraceContextTextMapPropagator()
_OTLP_EXTRA = "pip install 'mogplex-mcp[otel]' (or: uvx --from 'mogplex-mcp[otel]' mogplex-mcp ...)"


@contextmanager
def span(
    name: str, attributes: Mapping[str, str | int | float | bool] | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span]:
    """A span around the block; an exception marks it failed with its class name (never its message)."""
    tracer = trace.get_tracer("mogplex_mcp", __version__)  # not cached: it follows the provider installed now
    with tracer.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if current.is_recording():
                current.set_attribute("error.type", type(exc).__qualname__)
                current.set_status(StatusCode.ERROR)
            raise


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) for the current span — only when tracing is on and recording."""
    if trace.get_current_span().is_recording():
        _W3C.inject(headers)


def trace_id_hex() -> str | None:
    """The current trace id (32 hex digits) when a span is recording, for log lines to point at their trace."""
    current = trace.get_current_span()
    if not current.is_recording():
        return None
    return format(current.get_span_context().trace_id, "032x")


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces: an OTLP endpoint set, the SDK and the exporter not off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool((env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip())


def configure(env: Mapping[str, str] | None = None) -> str | None:
    """Install the OpenTelemetry SDK exporting over OTLP/HTTP if `OTEL_*` asks for it.

    Returns a line for the log saying where spans go, or None when tracing stays off. Raises ConfigError
    naming the install command when an endpoint is set but the `otel` extra is not installed.
    """
    env = os.environ if env is None else env
    if not wanted(env):
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    if protocol.strip().lower() != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol[:20]!r} is not supported: mogplex-mcp exports traces over "
            "OTLP/HTTP (http/protobuf); point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            f"an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry SDK is not installed: "
            f"{_OTLP_EXTRA}; or unset the variable to run without traces"
        ) from None
    attributes = {"service.version": __version__}
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:  # the operator's OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default
        attributes["service.name"] = "mogplex-mcp"
    provider = TracerProvider(resource=Resource.create(attributes))  # flushes its spans at exit by itself
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return "traces: exporting over OTLP/HTTP (endpoint from OTEL_EXPORTER_OTLP_*)"
