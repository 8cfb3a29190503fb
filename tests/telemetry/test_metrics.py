"""/metrics after real tool calls over streamable HTTP: parsed as Prometheus parses it, and nothing identifying."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from mogplex_mcp.api.observed import ROUTES
from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from mogplex_mcp.runs.redis.connection import RedisLimits, connect
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.telemetry.hooks import Recorder, installed, recorder
from mogplex_mcp.telemetry.metrics import PrometheusRecorder
from tests.e2e.support import MODES, Mode, error, http_client, ok
from tests.redis_server import free_port
from tests.server.journal_faults import locked
from tests.telemetry.support import Scrape, observed

pytestmark = pytest.mark.anyio
PROMPT = "Rename the flaky retry helper and keep its tests green"
UNKNOWN_TOKEN = "mog_UnknownToken4Metrics8Zx"  # the emulator answers 401
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.parametrize("mode", MODES)
async def test_tool_calls_and_upstream_requests_are_counted_by_tool_route_and_outcome(
    tmp_path: Path, mode: Mode
) -> None:
    async with observed(tmp_path) as s, http_client(s.url, mode, DEMO_TOKEN) as alice:
        repos = await ok(alice, "list_repos")
        started = await ok(alice, "start_run", repoId=repos["repos"][0]["id"], prompt=PROMPT)
        run_id = started["run"]["runId"]
        await ok(alice, "get_run", runId=run_id)
        await error(alice, "get_run", runId="not-a-run")  # refused before any upstream call
        await ok(alice, "wait_for_run", runId=run_id, timeoutSeconds=1)  # starts following the run

        scrape = await s.scrape()
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="list_repos", outcome="ok") == 1
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="start_run", outcome="ok") == 1
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="get_run", outcome="ok") == 1
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="get_run", outcome="error") == 1
        # The latency histogram's count matches, and its buckets are cumulative up to +Inf.
        assert scrape.value("mogplex_mcp_tool_call_duration_seconds_count", tool="start_run", outcome="ok") == 1
        assert scrape.value("mogplex_mcp_tool_call_duration_seconds_bucket", tool="start_run", le="+Inf") == 1
        assert scrape.value("mogplex_mcp_tool_call_duration_seconds_sum", tool="start_run") > 0

        # Upstream: one POST /runs, answered 202 (the emulator's status for a new run); ids never in a label.
        posts = scrape.value("mogplex_mcp_upstream_requests_total", method="POST", route="/runs")
        assert posts == 1
        assert scrape.value("mogplex_mcp_upstream_requests_total", method="GET", route="/repos", status="200") == 1
        assert scrape.value("mogplex_mcp_upstream_requests_total", route="/runs/{runId}") >= 1
        routes = {s.labels["route"] for s in scrape.samples if "route" in s.labels}
        assert routes <= ROUTES and "/runs" in routes
        assert scrape.value("mogplex_mcp_upstream_request_duration_seconds_count", method="POST", route="/runs") == 1

        # Live state: this client's session (handshake era only), its connection, the build.
        assert scrape.value("mogplex_mcp_http_sessions_open") == (1 if mode == "legacy" else 0)
        assert scrape.value("mogplex_mcp_http_connections_open") >= 1
        assert scrape.value("mogplex_mcp_build_info") == 1
        assert scrape.value("mogplex_mcp_http_event_streams_open") == (1 if mode == "legacy" else 0)  # its GET stream
        # Following: one run held, one token's budget, some of it spent — no token named anywhere.
        assert scrape.value("mogplex_mcp_followers_held") == 1
        assert scrape.value("mogplex_mcp_pacer_tokens") == 1
        assert scrape.value("mogplex_mcp_pacer_budget_remaining_min") < 40
        assert scrape.value("mogplex_mcp_follow_leases_held") == 0  # no Redis: nothing shared to lead

        for secret in (DEMO_TOKEN, PROMPT, run_id, "Bearer"):
            assert secret not in scrape.text
        assert not RUN_ID.search(scrape.text)


async def test_429s_with_retry_after_401_cache_hits_and_oversized_answers_are_counted(tmp_path: Path) -> None:
    async with observed(tmp_path, max_response_bytes=64 * 1024) as s:
        emulator = s.emu.emulator
        async with http_client(s.url, "auto", DEMO_TOKEN) as alice:
            emulator.inject_fault("rate_limited_429", count=1, path="/api/v1/mogplex/repos", retry_after=30)
            message = await error(alice, "list_repos")
            assert "30" in message  # too long to wait through: reported, not slept
            repo_id = (await ok(alice, "list_repos"))["repos"][0]["id"]
            run_id = (await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT))["run"]["runId"]
            emulator.inject_fault("oversized_body", count=1, path=f"/api/v1/mogplex/runs/{run_id}", size=200_000)
            assert "oversized" in await error(alice, "get_run", runId=run_id)
        async with http_client(s.url, "auto", UNKNOWN_TOKEN) as stranger:
            await error(stranger, "list_repos")  # upstream says 401
            sent = emulator.request_count()
            await error(stranger, "list_repos")  # refused here: the 401 is remembered
            assert emulator.request_count() == sent

        scrape = await s.scrape()
        assert scrape.value("mogplex_mcp_upstream_requests_total", route="/repos", status="429") == 1
        assert scrape.value("mogplex_mcp_upstream_retry_after_seconds_count") == 1
        assert scrape.value("mogplex_mcp_upstream_retry_after_seconds_sum") == 30
        assert scrape.value("mogplex_mcp_upstream_requests_total", route="/repos", status="401") == 1
        assert scrape.value("mogplex_mcp_upstream_rejected_token_refusals_total") == 1
        assert scrape.value("mogplex_mcp_upstream_oversized_answers_total", route="/runs/{runId}") == 1
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="list_repos", outcome="error") == 3
        for secret in (DEMO_TOKEN, UNKNOWN_TOKEN, PROMPT, run_id):
            assert secret not in scrape.text


async def test_unknown_tool_names_do_not_become_labels(tmp_path: Path) -> None:
    async with observed(tmp_path) as s, http_client(s.url, "legacy", DEMO_TOKEN) as alice:
        for name in ("mog_LooksLikeAToken123456", "x" * 200, "list_repos2"):
            with pytest.raises(MCPError) as refused:  # an unknown tool is a protocol error naming the tools
                await alice.call_tool(name, {})
            assert refused.value.error.code == INVALID_PARAMS
        scrape = await s.scrape()
        assert scrape.value("mogplex_mcp_tool_calls_total", tool="unknown") == 3
        assert not any("mog_" in value or "xxx" in value for value in scrape.label_values())


async def test_metrics_are_not_served_to_mcp_callers_and_stop_with_the_app(tmp_path: Path) -> None:
    async with observed(tmp_path) as s:
        async with httpx2.AsyncClient(timeout=10) as http:
            on_mcp_port = await http.get(s.url.removesuffix("/mcp") + "/metrics")
            assert on_mcp_port.status_code == 404
            assert "mogplex_mcp" not in on_mcp_port.text
            assert (await http.post(s.metrics_url)).status_code == 405
        assert recorder() is s.app.state.metrics  # recording while the app runs...
    assert type(recorder()) is Recorder  # ...and not after: another server in this process is not counted
    with anyio.fail_after(5):
        async with httpx2.AsyncClient(timeout=1) as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get(s.metrics_url)


async def test_a_journal_fallback_is_counted_and_the_start_still_answers(tmp_path: Path) -> None:
    async with observed(tmp_path, journal_wait_seconds=0.2) as s, http_client(s.url, "legacy", DEMO_TOKEN) as alice:
        repo_id = (await ok(alice, "list_repos"))["repos"][0]["id"]
        await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT)  # the journal file exists now
        assert (await s.scrape()).value("mogplex_mcp_journal_fallbacks_total") == 0
        with locked(tmp_path / "state" / JOURNAL_FILE_NAME):  # another process holds its write lock
            await ok(alice, "start_run", repoId=repo_id, prompt=PROMPT + " (again, differently)")
        scrape = await s.scrape()
        assert scrape.value("mogplex_mcp_journal_fallbacks_total", operation="claim_an_idempotency_key") == 1


async def test_redis_failures_are_counted_by_operation_with_their_latency() -> None:
    store = connect(f"redis://:hunter2secret@127.0.0.1:{free_port()}/0", limits=RedisLimits(command_seconds=0.5))
    with installed(PrometheusRecorder()) as metrics, pytest.raises(StoreUnavailableError):
        await store.ping()
    await store.aclose()
    assert isinstance(metrics, PrometheusRecorder)
    scrape = Scrape(metrics.exposition().decode())
    assert scrape.value("mogplex_mcp_redis_commands_total", operation="reach_redis", outcome="error") == 1
    assert scrape.value("mogplex_mcp_redis_command_duration_seconds_count", operation="reach_redis") == 1
    assert "hunter2secret" not in scrape.text and "127.0.0.1" not in scrape.text
