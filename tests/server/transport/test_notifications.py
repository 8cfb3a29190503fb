"""Attack: eavesdropping. Another token cannot subscribe to a run it cannot read, nor hear about anyone's runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import Subscription
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp_types import INVALID_PARAMS

from mogplex_mcp.emulator import DEMO_TOKEN, OTHER_USER_TOKEN
from tests.e2e.support import REPO_ID, ok
from tests.server.resources.test_run_resources import WAIT_LIMIT, Inbox
from tests.server.transport.support import PUBLIC, client, served, subscribe_legacy

pytestmark = pytest.mark.anyio


async def start(alice: Client, prompt: str) -> str:
    started = await ok(alice, "start_run", repoId=REPO_ID, prompt=prompt)
    run_id: str = started["run"]["runId"]
    return run_id


class Heard:
    """What one `subscriptions/listen` stream delivered."""

    def __init__(self) -> None:
        self.events: list[ServerEvent] = []
        self._arrived = anyio.Event()

    async def collect(self, stream: Subscription) -> None:
        async for event in stream:
            self.events.append(event)
            self._arrived.set()
            self._arrived = anyio.Event()

    async def wait(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(WAIT_LIMIT):
            while not condition():
                await self._arrived.wait()


async def test_another_token_cannot_subscribe_to_a_run_in_either_era(tmp_path: Path) -> None:
    async with (
        served(tmp_path, PUBLIC) as s,
        client(s.url, "legacy", DEMO_TOKEN) as alice,
        client(s.url, "legacy", OTHER_USER_TOKEN) as bob_legacy,
        client(s.url, "auto", OTHER_USER_TOKEN) as bob_modern,
    ):
        uri = f"mogplex://runs/{await start(alice, 'Private work [scenario:endless]')}"
        with pytest.raises(MCPError) as legacy:
            await subscribe_legacy(bob_legacy, uri)
        assert legacy.value.error.code == INVALID_PARAMS and "not found" in legacy.value.error.message
        with pytest.raises(MCPError) as modern:
            async with bob_modern.listen(resource_subscriptions=[uri]):
                pass
        assert modern.value.error.code == INVALID_PARAMS and "not found" in modern.value.error.message
        await subscribe_legacy(alice, uri)  # the owner may


async def test_notifications_reach_only_the_token_they_concern_in_both_eras(tmp_path: Path) -> None:
    alice_inbox, bob_inbox = Inbox(), Inbox()
    async with (
        served(tmp_path, PUBLIC) as s,
        client(s.url, "legacy", DEMO_TOKEN, alice_inbox) as alice,
        client(s.url, "auto", DEMO_TOKEN) as alice_modern,
        client(s.url, "legacy", OTHER_USER_TOKEN, bob_inbox) as bob,
        client(s.url, "auto", OTHER_USER_TOKEN) as bob_modern,
    ):
        await bob.list_tools()  # Bob's connection is known to the server before anything happens
        alice_heard, bob_heard = Heard(), Heard()
        first = await start(alice, "First [scenario:endless]")
        uri = f"mogplex://runs/{first}"
        await subscribe_legacy(alice, uri)
        async with (
            alice_modern.listen(resource_subscriptions=[uri], resources_list_changed=True) as alice_stream,
            bob_modern.listen(resources_list_changed=True) as bob_stream,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(alice_heard.collect, alice_stream)
            tg.start_soon(bob_heard.collect, bob_stream)
            second = await start(alice, "Second [scenario:success]")  # new in Alice's resources/list
            await alice_inbox.wait(lambda: alice_inbox.list_changed >= 1 and uri in alice_inbox.updated)
            await alice_heard.wait(
                lambda: ResourcesListChanged() in alice_heard.events and ResourceUpdated(uri) in alice_heard.events
            )
            await ok(bob, "list_repos")  # a round trip: anything already flushed to Bob has arrived
            tg.cancel_scope.cancel()
        assert second != first
        assert bob_inbox.list_changed == 0 and bob_inbox.updated == []
        assert bob_heard.events == []
