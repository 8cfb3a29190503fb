"""Telemetry: the hooks instrumented code calls, Prometheus metrics, OpenTelemetry traces, structured logs.

A leaf like `config`: it imports nothing of ours but `config`, so `api`, `runs` and `server` may all report
through it. Nothing here costs anything until the operator asks: the hooks are no-ops until a recorder is
installed (`--metrics-port`), spans go nowhere until an OTLP endpoint is configured (`OTEL_*`), and
`prometheus_client` and the OpenTelemetry SDK are imported only then.
"""
