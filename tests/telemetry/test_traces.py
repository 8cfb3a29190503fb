"""Traces: upstream, journal and Redis spans inside the SDK's MCP span, and the traceparent Mogplex receives."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.e2e.support import MODES, Mode, http_client, ok
from tests.redis_server import RedisServer
from tests.server.test_shared_pacer import fresh_database
from tests.telemetry.support import observed
from tests.telemetry.tracing_support import attribute_text, span_exporter

pytestmark = pytest.mark.anyio
PROMPT = "Trace this start: add a retry to the flaky webhook test"


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_calls_are_spans_of_the_tool_call_and_mogplex_receives_their_traceparent(
    tmp_path: Path, mode: Mode
) -> None:
    with span_exporter() as exporter:
        async with observed(tmp_path) as s, http_client(s.url, mode, DEMO_TOKEN) as alice:
            repo_id = (await ok(alice, "list_repos"))["repos"][0]["id"]
            run_id = (await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT))["run"]["runId"]
            records = s.emu.emulator.log.snapshot()
        spans = exporter.get_finished_spans()

    tool_span = next(span for span in spans if span.name == "tools/call start_run")
    trace_id = tool_span.context.trace_id
    in_trace = [span for span in spans if span.context.trace_id == trace_id]
    post = next(span for span in in_trace if span.name == "POST /runs")
    assert post.kind is SpanKind.CLIENT
    assert post.attributes is not None
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["url.template"] == "/runs"
    assert post.attributes["http.response.status_code"] == 202
    assert any(span.name == "journal claim_key" for span in in_trace)  # the de-duplication claim, same trace

    # What Mogplex received: the POST carried this trace and the client span as its parent.
    sent = next(record for record in records if record.method == "POST" and record.path.endswith("/runs"))
    assert sent.traceparent is not None
    version, sent_trace, parent, flags = sent.traceparent.split("-")
    assert (version, sent_trace, parent) == ("00", f"{trace_id:032x}", f"{post.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert all(record.traceparent for record in records)

    text = attribute_text(spans)
    for secret in (DEMO_TOKEN, PROMPT, run_id, "Bearer"):
        assert secret not in text


async def test_no_traceparent_is_sent_while_tracing_is_off(tmp_path: Path) -> None:
    async with observed(tmp_path) as s, http_client(s.url, "legacy", DEMO_TOKEN) as alice:
        await ok(alice, "list_repos")
        records = s.emu.emulator.log.snapshot()
    assert records and all(record.traceparent is None for record in records)


async def test_redis_operations_are_spans_and_metrics(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_url = await fresh_database(redis_server, 7)
    with span_exporter() as exporter:
        async with observed(tmp_path, redis_url=redis_url) as s, http_client(s.url, "auto", DEMO_TOKEN) as alice:
            repo_id = (await ok(alice, "list_repos"))["repos"][0]["id"]
            await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT)
            scrape = await s.scrape()
        spans = exporter.get_finished_spans()

    tool_span = next(span for span in spans if span.name == "tools/call start_run")
    claim = next(span for span in spans if span.name == "redis claim an idempotency key")
    assert claim.context.trace_id == tool_span.context.trace_id
    assert claim.attributes is not None and claim.attributes["db.system.name"] == "redis"
    assert scrape.value("mogplex_mcp_redis_commands_total", operation="claim_an_idempotency_key", outcome="ok") == 1
    assert scrape.value("mogplex_mcp_redis_command_duration_seconds_count", operation="claim_an_idempotency_key") == 1
    assert redis_url not in scrape.text and PROMPT not in attribute_text(spans)
