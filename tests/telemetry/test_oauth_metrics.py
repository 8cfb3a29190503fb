"""OAuth sign-ins and refreshes counted by outcome, through the real front door over loopback (no token shown)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.telemetry.hooks import installed
from mogplex_mcp.telemetry.metrics import PrometheusRecorder
from tests.e2e.support import UNKNOWN_TOKEN
from tests.oauth.support import RawFlow, oauth_server
from tests.telemetry.support import Scrape

pytestmark = pytest.mark.anyio


async def test_sign_ins_and_refreshes_are_counted_by_outcome(tmp_path: Path) -> None:
    with installed(PrometheusRecorder()) as metrics:
        async with oauth_server(tmp_path) as server, httpx2.AsyncClient(timeout=20) as http:
            raw = RawFlow(server, http)
            await raw.register()
            _, page = await raw.sign_in_page()
            assert (await raw.submit(page, UNKNOWN_TOKEN)).status_code == 400  # Mogplex refuses the PAT
            _, page = await raw.sign_in_page(state="no-thanks")
            assert (await raw.submit(page, DEMO_TOKEN, action="deny")).status_code == 303
            first = (await raw.exchange(await raw.code(DEMO_TOKEN))).json()
            assert (await raw.refresh(first["refresh_token"])).status_code == 200
            assert (await raw.refresh(first["refresh_token"])).status_code == 400  # a replay: refused
    assert isinstance(metrics, PrometheusRecorder)
    scrape = Scrape(metrics.exposition().decode())
    assert scrape.value("mogplex_mcp_oauth_sign_ins_total", outcome="ok") == 1
    assert scrape.value("mogplex_mcp_oauth_sign_ins_total", outcome="invalid") == 1
    assert scrape.value("mogplex_mcp_oauth_sign_ins_total", outcome="denied") == 1
    assert scrape.value("mogplex_mcp_oauth_refreshes_total", outcome="ok") == 1
    assert scrape.value("mogplex_mcp_oauth_refreshes_total", outcome="invalid") == 1
    for secret in (DEMO_TOKEN, UNKNOWN_TOKEN, first["refresh_token"], first["access_token"]):
        assert secret not in scrape.text
