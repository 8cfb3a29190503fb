"""Contract: over real HTTP, every endpoint answers in the shapes of the shared fixtures, in both flavours."""

from __future__ import annotations

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig, ManualClock
from mogplex_mcp.emulator.config import Flavor
from tests.emulator.support import (
    API,
    MISSING_UUID,
    REPO_API,
    assert_run_shape,
    error_of,
    event_keys,
    fixture,
    keys,
    served,
)

pytestmark = pytest.mark.anyio
FLAVORS = ["documented", "observed"]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_repos_answer_the_fixture_shape_sorted_by_name(flavor: Flavor) -> None:
    expected = fixture("repos_200.json")
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor)) as api:
            response = await api.client.get(f"{API}/repos")
    body = response.json()
    assert response.status_code == 200
    assert keys(body) == keys(expected) and keys(body["data"]) == keys(expected["data"])
    names = [repo["full_name"] for repo in body["data"]["repos"]]
    assert names == sorted(names) and "acme/api" in names
    for repo in body["data"]["repos"]:
        assert keys(repo) == keys(expected["data"]["repos"][0])


async def test_repos_filter_by_query_id_and_limit() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            by_query = (await api.client.get(f"{API}/repos", params={"q": "WEB"})).json()["data"]["repos"]
            by_id = await api.client.get(f"{API}/repos", params={"id": REPO_API, "q": "web"})
            limited = (await api.client.get(f"{API}/repos", params={"limit": "2"})).json()["data"]["repos"]
    assert [repo["full_name"] for repo in by_query] == ["acme/web"]
    assert [repo["full_name"] for repo in by_id.json()["data"]["repos"]] == ["acme/api"]  # id wins over q
    assert len(limited) == 2


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_start_answers_202_with_the_bare_run_and_replayed(flavor: Flavor) -> None:
    expected = fixture("start_run_202.json")
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor), clock=ManualClock()) as api:
            response = await api.start(createBranch=True)
    body = response.json()
    assert response.status_code == 202
    assert keys(body["data"]) == keys(expected["data"])
    data = body["data"]
    assert data["replayed"] is False and data["status"] == "pending" and data["sandboxId"] is None
    assert data["eventsUrl"] == f"{API}/runs/{data['runId']}/events"
    assert data["cancelUrl"] == f"{API}/runs/{data['runId']}/cancel"
    assert data["branch"]["base"] == "main" and data["branch"]["working"].startswith("mogplex/run/")


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_get_run_wraps_the_run_and_events_answer_run_and_events(flavor: Flavor) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(8)
            got = (await api.client.get(f"{API}/runs/{run_id}")).json()
            events = (await api.client.get(f"{API}/runs/{run_id}/events")).json()
    assert keys(got) == {"ok", "data"} and keys(got["data"]) == {"run"}
    assert_run_shape(got["data"]["run"])
    assert got["data"]["run"]["status"] == "streaming" and got["data"]["run"]["sandboxId"].startswith("vsb_")
    assert keys(events["data"]) == keys(fixture(f"events_{flavor}_200.json")["data"])
    assert_run_shape(events["data"]["run"])
    assert events["data"]["events"], "a streaming run has events"
    for event in events["data"]["events"]:
        assert keys(event) == event_keys()
        assert isinstance(event["payload"], dict)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_event_types_are_the_flavours_own(flavor: Flavor) -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(60)
            types = [event["type"] for event in await api.events(run_id)]
    fixture_types = {event["type"] for event in fixture(f"events_{flavor}_200.json")["data"]["events"]}
    seen = set(types)
    if flavor == "observed":
        assert {"started", "status_changed", "tool_started", "tool_finished", "log", "finished"} <= seen
        assert seen & fixture_types >= {"started", "status_changed", "tool_started", "tool_finished"}
    else:
        assert {"stream_started", "tool_call"} <= seen and fixture_types <= seen
    assert types[-1] == "finished" and "log" in seen


@pytest.mark.parametrize(
    ("flavor", "name"),
    [("documented", "cancel_documented_200.json"), ("observed", "cancel_observed_200.json")],
)
async def test_cancel_answers_the_flavours_shape(flavor: Flavor, name: str) -> None:
    expected = fixture(name)
    already = fixture(name.replace("_200", "_already_terminal_200"))
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(EmulatorConfig(flavor=flavor), clock=clock) as api:
            run_id = await api.start_id()
            clock.advance(5)
            first = (await api.cancel(run_id)).json()
            clock.advance(5)
            second = (await api.cancel(run_id)).json()
    assert keys(first["data"]) == keys(expected["data"]) and keys(second["data"]) == keys(already["data"])
    assert_run_shape(first["data"]["run"])
    assert second["data"]["run"]["status"] == "cancelled"
    if flavor == "documented":
        assert first["data"]["status"] == "cancellation_requested"
        assert second["data"]["status"] == "already_terminal"
    else:
        assert (first["data"]["status"], first["data"]["alreadyTerminal"]) == ("cancelled", False)
        assert (second["data"]["status"], second["data"]["alreadyTerminal"]) == ("cancelled", True)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_every_error_code_matches_the_fixture_envelope(flavor: Flavor) -> None:
    envelopes = fixture("error_envelopes.json")
    clock = ManualClock()
    config = EmulatorConfig(flavor=flavor, rate_limit_per_minute=0, start_limits=(2, 30, 150))
    seen: dict[str, int] = {}
    with anyio.fail_after(10):
        async with served(config, clock=clock) as api:
            bad_token = {"Authorization": "Bearer mog_NotARealToken000000000000"}
            assert (await api.start("[scenario:cancel_conflict] x", key="k")).status_code == 202
            answers = [
                await api.client.get(f"{API}/repos", headers=bad_token),
                await api.start(token=api.handle.read_only_token),
                await api.client.post(f"{API}/runs", json={"repoId": REPO_API, "prompt": "x"}),
                await api.client.get(f"{API}/runs/{MISSING_UUID}"),
                await api.start("a different body", key="k"),
                await api.start("over budget"),
            ]
            conflict_run = api.handle.emulator.run_ids()[0]
            answers.append(await api.cancel(conflict_run))
            api.handle.emulator.inject_fault("unavailable_503")
            answers.append(await api.client.get(f"{API}/repos"))
            api.handle.emulator.inject_fault("internal_500")
            answers.append(await api.client.get(f"{API}/repos"))
    for response in answers:
        status, code = error_of(response)
        seen[code] = status
    expected = {code: entry["status"] for code, entry in envelopes.items() if code != "AUTOMATION_REQUIRED"}
    assert seen == expected
