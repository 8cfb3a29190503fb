"""The emulator's newer-service behaviour: awaiting_input, the newer event style, harness mogplex,
AUTOMATION_REQUIRED — on a manual clock, through plain HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from mogplex_mcp.emulator import AUTOMATION_TOKEN, EmulatorConfig, ManualClock
from mogplex_mcp.emulator.config import Flavor
from tests.emulator.support import API, error_of, served

pytestmark = pytest.mark.anyio


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(rate_limit_per_minute=0, start_limits=(0, 0, 0), **overrides)


@pytest.mark.parametrize("flavor", ["documented", "observed"])
async def test_awaiting_input_pauses_the_run_until_it_is_cancelled(flavor: Flavor) -> None:
    clock = ManualClock()
    async with served(config(flavor=flavor), clock=clock) as api:
        run_id = await api.start_id("Ask first [scenario:awaiting_input]")
        clock.advance(3.0)
        assert (await api.run(run_id))["status"] == "streaming"
        clock.advance(3.0)
        assert (await api.run(run_id))["status"] == "awaiting_input"
        clock.advance(3_600.0)
        assert (await api.run(run_id))["status"] == "awaiting_input", "only a person resumes it"
        assert (await api.cancel(run_id)).status_code == 200
        clock.advance(2.0)
        assert (await api.run(run_id))["status"] == "cancelled"


async def test_the_newer_style_tells_tools_by_call_id_and_streams_the_agents_words() -> None:
    clock = ManualClock()
    async with served(config(flavor="observed", event_style="newer"), clock=clock) as api:
        run_id = await api.start_id("Fix it [scenario:success]")
        clock.advance(60.0)
        events = await api.events(run_id)
        starts = [e for e in events if e["type"] == "tool_started"]
        finishes = [e for e in events if e["type"] == "tool_finished"]
        assert starts and [e["payload"]["toolCallId"] for e in starts] == [e["payload"]["toolCallId"] for e in finishes]
        assert all(e["payload"]["kind"] == "tool" and e["payload"]["state"] == "running" for e in starts)
        assert {e["payload"]["state"] for e in finishes} == {"completed"}
        deltas = [e for e in events if e["type"] == "log" and e["payload"].get("kind") == "assistant_delta"]
        assert len(deltas) >= 4 and all(e["message"] for e in deltas)


@pytest.mark.parametrize(("style", "accepted"), [("classic", False), ("newer", True)])
async def test_harness_mogplex_is_accepted_only_by_the_newer_service(style: str, accepted: bool) -> None:
    async with served(config(event_style=style)) as api:
        response = await api.start("On the new harness", harness="mogplex")
        if accepted:
            assert response.status_code == 202 and response.json()["data"]["harness"] == "mogplex"
        else:
            assert error_of(response) == (400, "BAD_REQUEST")


async def test_an_automation_only_key_may_not_start_runs() -> None:
    async with served(config()) as api:
        refused = await api.start("Anything", token=AUTOMATION_TOKEN)
        assert error_of(refused) == (403, "AUTOMATION_REQUIRED")
        repos = await api.client.get(f"{API}/repos", headers={"Authorization": f"Bearer {AUTOMATION_TOKEN}"})
        assert repos.status_code == 200, "reading is not limited"
        assert api.handle.emulator.run_ids() == []
