"""The observed flavour's SSE event stream: every event, `id:` = event id, Last-Event-ID resume, closes at the end."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import EmulatorConfig, ManualClock
from tests.emulator.support import API, Api, error_of, event_keys, served

pytestmark = pytest.mark.anyio
OBSERVED = EmulatorConfig(flavor="observed", rate_limit_per_minute=0, start_limits=(0, 0, 0))


def stream_url(run_id: str) -> str:
    return f"{API}/runs/{run_id}/events/stream"


async def read_all(api: Api, run_id: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    """Read a stream until the server closes it; check every message's id is its event's id."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events = []
    async with api.client.stream("GET", stream_url(run_id), headers=headers) as response:
        assert response.status_code == 200
        async for message in httpx2.EventSource(response):
            event = json.loads(message.data)
            assert message.id == event["id"] and set(event) == event_keys()
            events.append(event)
    return events


async def test_a_finished_run_streams_every_event_then_closes() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(OBSERVED, clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(60)
            streamed = await read_all(api, run_id)
            listed = await api.events(run_id, limit=200)
    assert streamed == listed and streamed[-1]["type"] == "finished"


async def test_a_live_stream_delivers_events_as_time_passes_and_ends_at_the_terminal_event() -> None:
    clock = ManualClock()
    seen: list[str] = []
    with anyio.fail_after(10):
        async with served(OBSERVED, clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(2.5)
            async with api.client.stream("GET", stream_url(run_id)) as response:
                async for message in httpx2.EventSource(response):
                    seen.append(json.loads(message.data)["type"])
                    if len(seen) == 2:
                        clock.advance(60)  # the rest of the run happens while we listen
            status = (await api.run(run_id))["status"]
    assert seen[:2] == ["started", "status_changed"] and seen[-1] == "finished" and status == "success"


async def test_last_event_id_resumes_after_that_event_without_gaps_or_duplicates() -> None:
    clock = ManualClock()
    first: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async with served(OBSERVED, clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(60)
            async with api.client.stream("GET", stream_url(run_id)) as response:
                async for message in httpx2.EventSource(response):
                    first.append(json.loads(message.data))
                    if len(first) == 3:
                        break  # the client disconnects mid-stream
            rest = await read_all(api, run_id, last_event_id=first[-1]["id"])
            unknown = await read_all(api, run_id, last_event_id="not-an-event-id")
            everything = await api.events(run_id, limit=200)
    assert first + rest == everything and unknown == everything


async def test_the_stream_reaches_past_the_200_events_a_page_can_show() -> None:
    clock = ManualClock()
    config = EmulatorConfig(flavor="observed", long_run_events=500)
    with anyio.fail_after(20):
        async with served(config, clock=clock) as api:
            run_id = await api.start_id("[scenario:long] x")
            clock.advance(3600)
            streamed = await read_all(api, run_id)
            page = await api.events(run_id, limit=200)
    assert len(streamed) == 500 and streamed[:200] == page
    assert len({event["id"] for event in streamed}) == 500


async def test_cancelling_an_endless_run_ends_its_stream() -> None:
    clock = ManualClock()
    types: list[str] = []
    with anyio.fail_after(10):
        async with served(OBSERVED, clock=clock) as api:
            run_id = await api.start_id("[scenario:endless] x")
            clock.advance(10)
            async with api.client.stream("GET", stream_url(run_id)) as response:
                async for message in httpx2.EventSource(response):
                    types.append(json.loads(message.data)["type"])
                    if len(types) == 3:
                        assert (await api.cancel(run_id)).status_code == 200
    assert types[-2:] == ["cancel_requested", "cancelled"]


async def test_the_documented_flavour_has_no_stream_endpoint() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            run_id = await api.start_id()
            response = await api.client.get(stream_url(run_id))
    assert error_of(response) == (404, "NOT_FOUND")


async def test_the_stream_checks_auth_and_run_ids_like_the_rest() -> None:
    with anyio.fail_after(10):
        async with served(OBSERVED) as api:
            run_id = await api.start_id()
            no_token = await api.client.get(stream_url(run_id), headers={"Authorization": ""})
            bad_id = await api.client.get(stream_url("not-a-uuid"))
            missing = await api.client.get(stream_url("00000000-0000-4000-8000-000000000000"))
    assert no_token.status_code == 307 and bad_id.status_code == 500
    assert error_of(missing) == (404, "NOT_FOUND")
