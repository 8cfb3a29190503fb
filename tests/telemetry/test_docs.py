"""docs/operations.md lists every metric the server exports, with its type, and nothing it does not export."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mogplex_mcp.telemetry.metrics import LIVE_METRICS, PrometheusRecorder

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
ROW = re.compile(r"^\| `(mogplex_mcp_\w+)` \| (counter|gauge|histogram) \|", re.MULTILINE)


def exported() -> dict[str, str]:
    """Every metric family an instrumented server exposes (each live source watched), by exposed name."""
    metrics = PrometheusRecorder()
    for name in LIVE_METRICS:
        metrics.watch(name, lambda: 0)
    # Labelled families show no sample until used: use each once so the exposition names them all.
    metrics.tool_call("start_run", "ok", 0.1)
    metrics.upstream_response("GET", "/runs", "429", 0.1, 3.0)
    metrics.upstream_oversized("/runs")
    metrics.journal_fallback("claim")
    metrics.redis_command("take a request slot", 0.001, ok=True)
    metrics.oauth_sign_in("ok")
    metrics.oauth_refresh("ok")
    metrics.upstream_token_refused()
    families = text_string_to_metric_families(metrics.exposition().decode())
    return {family.name + ("_total" if family.type == "counter" else ""): family.type for family in families}


def test_every_exported_metric_is_in_the_operations_table_with_its_type() -> None:
    documented = dict(ROW.findall(DOC.read_text()))
    assert documented == exported()


def test_oauth_outcomes_cannot_grow_the_label_set() -> None:
    metrics = PrometheusRecorder()
    for outcome in ("ok", "OK", "mog_SomeTokenLike123456", "user@example.com"):
        metrics.oauth_sign_in(outcome)
    text = metrics.exposition().decode()
    assert 'outcome="ok"} 2.0' in text and 'outcome="other"} 2.0' in text
    assert "mog_" not in text and "example" not in text
