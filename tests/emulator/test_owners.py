"""Runs belong to the user whose token started them: another user's run is 404, keys are scoped per user."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN, READ_ONLY_TOKEN, EmulatorConfig, ManualClock
from tests.emulator.support import API, MISSING_UUID, Api, error_of, served

pytestmark = pytest.mark.anyio
NO_LIMITS = EmulatorConfig(flavor="observed", rate_limit_per_minute=0, start_limits=(0, 0, 0))
OTHER = {"Authorization": f"Bearer {OTHER_USER_TOKEN}"}


async def other_user_calls(api: Api, run_id: str) -> list[httpx2.Response]:
    """The four run endpoints, called with the other user's token."""
    return [
        await api.client.get(f"{API}/runs/{run_id}", headers=OTHER),
        await api.client.get(f"{API}/runs/{run_id}/events", headers=OTHER),
        await api.client.get(f"{API}/runs/{run_id}/events/stream", headers=OTHER),
        await api.client.post(f"{API}/runs/{run_id}/cancel", headers=OTHER),
    ]


async def test_another_users_run_is_not_found_on_every_run_endpoint() -> None:
    clock = ManualClock()
    with anyio.fail_after(10):
        async with served(NO_LIMITS, clock=clock) as api:
            run_id = await api.start_id("[scenario:endless] x")
            clock.advance(5)
            foreign = await other_user_calls(api, run_id)
            missing = await other_user_calls(api, MISSING_UUID)
            own = await api.run(run_id)
            own_events = await api.events(run_id)
            controlled = (await api.client.get("/_emulator/runs")).json()["data"]["runs"]
    assert [error_of(response) for response in foreign] == [(404, "NOT_FOUND")] * 4
    assert [response.json() for response in foreign] == [response.json() for response in missing]
    assert own["status"] == "streaming" and own_events  # the other user's cancel changed nothing
    assert [(run["runId"], run["owner"]) for run in controlled] == [(run_id, "demo-user")]


async def test_the_other_user_owns_the_runs_they_start() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            started = await api.start(token=OTHER_USER_TOKEN)
            run_id = started.json()["data"]["runId"]
            mine = await api.client.get(f"{API}/runs/{run_id}", headers=OTHER)
            cancelled = await api.client.post(f"{API}/runs/{run_id}/cancel", headers=OTHER)
            demo = await api.client.get(f"{API}/runs/{run_id}")
            reader = await api.client.get(
                f"{API}/runs/{run_id}", headers={"Authorization": f"Bearer {READ_ONLY_TOKEN}"}
            )
    assert started.status_code == 202 and mine.status_code == 200
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
    assert error_of(demo) == (404, "NOT_FOUND") and error_of(reader) == (404, "NOT_FOUND")


async def test_tokens_of_one_user_share_their_runs() -> None:
    second = "mog_SecondDemoPat0000000000"
    tokens = {DEMO_TOKEN: frozenset({"read", "write"}), second: frozenset({"read", "write"})}
    config = EmulatorConfig(tokens=tokens, owners={}, rate_limit_per_minute=0, start_limits=(0, 0, 0))
    with anyio.fail_after(10):
        async with served(config) as api:
            run_id = await api.start_id()
            seen = await api.client.get(f"{API}/runs/{run_id}", headers={"Authorization": f"Bearer {second}"})
    assert seen.status_code == 200 and seen.json()["data"]["run"]["runId"] == run_id


async def test_one_idempotency_key_from_two_users_makes_two_runs() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            mine = await api.start("Same work", key="shared-key")
            theirs = await api.start("Same work", key="shared-key", token=OTHER_USER_TOKEN)
            their_other_body = await api.start("Other work", key="shared-key", token=OTHER_USER_TOKEN)
            my_replay = await api.start("Same work", key="shared-key")
            their_replay = await api.start("Same work", key="shared-key", token=OTHER_USER_TOKEN)
            runs = api.handle.emulator.run_ids()
    assert mine.status_code == 202 and theirs.status_code == 202
    mine_data, theirs_data = mine.json()["data"], theirs.json()["data"]
    assert mine_data["replayed"] is False and theirs_data["replayed"] is False
    assert runs == [mine_data["runId"], theirs_data["runId"]] and len(set(runs)) == 2
    assert error_of(their_other_body) == (409, "IDEMPOTENCY_CONFLICT")
    assert my_replay.json()["data"]["runId"] == mine_data["runId"]
    assert their_replay.json()["data"]["runId"] == theirs_data["runId"]
    assert my_replay.json()["data"]["replayed"] is True and their_replay.json()["data"]["replayed"] is True


def test_a_token_without_an_owner_belongs_to_the_demo_user() -> None:
    config = EmulatorConfig(tokens={"mog_Extra": frozenset({"read"})})
    assert config.owner_of("mog_Extra") == config.owner_of(DEMO_TOKEN) == "demo-user"
    assert config.owner_of(OTHER_USER_TOKEN) == "other-user"
    with pytest.raises(ValueError, match="owners"):
        EmulatorConfig(owners={DEMO_TOKEN: ""})
