"""An OpenTelemetry SDK with an in-memory exporter, recording for one test at a time.

The API lets a process set its tracer provider once, and the MCP SDK's tracer keeps the first one it sees.
So the provider is installed once, and a sampler switch decides whether spans record: outside
`span_exporter()` every span is dropped (non-recording), exactly as with tracing off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult


class _Switch(Sampler):
    on = False

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None, *args: Any
    ) -> SamplingResult:
        if not self.on:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)  # the span's attributes come from here

    def get_description(self) -> str:
        return "tests' on/off switch"


class _ToCurrent(SpanExporter):
    current: InMemorySpanExporter | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.current is not None:
            return self.current.export(spans)
        return SpanExportResult.SUCCESS


_SWITCH = _Switch()
_EXPORT = _ToCurrent()
_PROVIDER = TracerProvider(sampler=_SWITCH)
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORT))


@contextmanager
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """Every span finished during the block, in memory."""
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)
    assert trace.get_tracer_provider() is _PROVIDER, "another tracer provider was installed in this process"
    exporter = InMemorySpanExporter()
    _EXPORT.current, _SWITCH.on = exporter, True
    try:
        yield exporter
    finally:
        _EXPORT.current, _SWITCH.on = None, False


def attribute_text(spans: tuple[ReadableSpan, ...]) -> str:
    """Every span name and attribute value, as one text to scan for secrets."""
    parts = []
    for span in spans:
        parts.append(span.name)
        parts.extend(str(value) for value in (span.attributes or {}).values())
        parts.extend(str(event.attributes) for event in span.events)
    return "\n".join(parts)
