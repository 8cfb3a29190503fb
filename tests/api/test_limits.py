"""The upstream gate and the caps: 401 memory, per-token shares, the stream budget, capped bodies, their settings."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from mogplex_mcp.api.errors import AuthenticationError, OversizedResponseError, ServerError
from mogplex_mcp.api.limits import MAX_TRACKED_TOKENS, GateLimits, StreamBudgetExhaustedError, UpstreamGate
from mogplex_mcp.api.retry import RetryPolicy
from mogplex_mcp.api.stream import EventStreamClient
from mogplex_mcp.config import ConfigError, Settings
from tests.api.support import TOKEN, FakeClock, Upstream, make_client, reply_fixture, reply_raw

pytestmark = pytest.mark.anyio

OTHER = "mog_AnotherUsersToken0000001"
RUN_ID = "5b0c2a8e-3f1d-4c47-9a51-2f6e8d7c1a90"


def unauthorized() -> httpx2.Response:
    body = {"ok": False, "error": {"code": "UNAUTHORIZED", "message": "Unauthorized"}}
    return httpx2.Response(401, json=body)


async def test_a_401_is_remembered_for_a_while_then_asked_again() -> None:
    clock = FakeClock()
    gate = UpstreamGate(GateLimits(rejected_seconds=30.0), clock=clock)
    upstream = Upstream(default=lambda _: unauthorized())
    client = make_client(upstream, clock=clock, gate=gate)
    with pytest.raises(AuthenticationError):
        await client.list_repos()
    clock.now += 29.0
    with pytest.raises(AuthenticationError) as remembered:
        await client.list_repos()
    assert len(upstream.requests) == 1, "the second call was refused without a request"
    assert "Nothing was sent" in str(remembered.value) and TOKEN not in str(remembered.value)
    clock.now += 1.0
    with pytest.raises(AuthenticationError):
        await client.list_repos()
    assert len(upstream.requests) == 2, "after 30 s the token is tried again"


async def test_zero_seconds_turns_the_401_memory_off_and_other_tokens_are_unaffected() -> None:
    gate = UpstreamGate(GateLimits(rejected_seconds=0.0))
    gate.rejected(TOKEN)
    gate.check_rejected(TOKEN, "GET /repos")
    remembering = UpstreamGate()
    remembering.rejected(TOKEN)
    remembering.check_rejected(OTHER, "GET /repos")
    with pytest.raises(AuthenticationError):
        remembering.check_rejected(TOKEN, "GET /repos")


async def test_tokens_upstream_never_accepted_share_one_tokens_share() -> None:
    gate = UpstreamGate(GateLimits(per_token=1))
    gate.accepted(OTHER)
    entered: list[str] = []
    release = anyio.Event()

    async def hold(token: str) -> None:
        async with gate.request_slot(token):
            entered.append(token)
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "mog_MadeUpNumberOne0000000")
        tg.start_soon(hold, "mog_MadeUpNumberTwo0000000")
        tg.start_soon(hold, OTHER)
        await anyio.wait_all_tasks_blocked()
        assert sorted(entered) == sorted(["mog_MadeUpNumberOne0000000", OTHER]), "the second stranger waits"
        assert gate.requests_in_flight == 2
        release.set()
    assert len(entered) == 3 and gate.requests_in_flight == 0


async def test_the_gates_tables_stay_bounded_however_many_tokens_come() -> None:
    gate = UpstreamGate()
    for n in range(MAX_TRACKED_TOKENS + 50):
        token = f"mog_Flood{n:020d}"
        async with gate.request_slot(token):
            pass
        gate.rejected(token)
    assert gate.tracked <= MAX_TRACKED_TOKENS
    with pytest.raises(AuthenticationError):
        gate.check_rejected(f"mog_Flood{MAX_TRACKED_TOKENS + 49:020d}", "GET /repos")


async def test_the_stream_budget_refuses_at_once_and_sends_nothing() -> None:
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=b": hello\n\n", headers={"content-type": "text/event-stream"})

    gate = UpstreamGate(GateLimits(streams=2, streams_per_token=1))
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
        mine, theirs = (EventStreamClient(token=t, http=http, gate=gate) for t in (TOKEN, OTHER))
        async with mine.open("https://mogplex.test", RUN_ID), theirs.open("https://mogplex.test", RUN_ID):
            assert (gate.streams_of(TOKEN), gate.streams_open) == (1, 2)
            with pytest.raises(StreamBudgetExhaustedError, match="already holds 1"):
                async with mine.open("https://mogplex.test", RUN_ID):
                    pass
            third = EventStreamClient(token="mog_ThirdUsersToken00000001", http=http, gate=gate)
            with pytest.raises(StreamBudgetExhaustedError, match="all 2 event streams"):
                async with third.open("https://mogplex.test", RUN_ID):
                    pass
        assert len(seen) == 2 and gate.streams_open == 0


async def test_a_declared_oversized_body_is_refused_unread_and_not_retried() -> None:
    upstream = Upstream(default=reply_raw(200, b"x" * (2 * 1024 * 1024), "application/json"))
    client = make_client(upstream, retry=RetryPolicy(max_retries=2), max_body_bytes=1024 * 1024)
    with pytest.raises(OversizedResponseError, match=r"more than 1 MB") as caught:
        await client.list_repos()
    assert caught.value.limit == 1024 * 1024 and len(upstream.requests) == 1


async def test_an_error_answer_is_cut_not_refused() -> None:
    page = b"<html>" + b"x" * (2 * 1024 * 1024) + b"</html>"
    upstream = Upstream(script=[reply_raw(500, page, "text/html"), reply_fixture("repos_200.json")])
    client = make_client(upstream, retry=RetryPolicy(max_retries=1, budget_seconds=60), max_body_bytes=1024 * 1024)
    assert [repo.full_name for repo in await client.list_repos()]
    upstream = Upstream(default=reply_raw(500, page, "text/html"))
    with pytest.raises(ServerError):
        await make_client(upstream, retry=RetryPolicy(max_retries=0), max_body_bytes=1024 * 1024).list_repos()


def test_the_limits_are_settings_with_defaults_and_env_vars() -> None:
    defaults = Settings.from_env({})
    assert (defaults.upstream_connections, defaults.upstream_per_token) == (20, 4)
    assert (defaults.upstream_streams, defaults.upstream_streams_per_token) == (100, 25)
    assert (defaults.max_response_bytes, defaults.max_stream_event_bytes) == (4 * 1024 * 1024, 1024 * 1024)
    assert defaults.rejected_token_seconds == 30.0
    env = {
        "MOGPLEX_UPSTREAM_CONNECTIONS": "8",
        "MOGPLEX_UPSTREAM_PER_TOKEN": "2",
        "MOGPLEX_UPSTREAM_STREAMS": "10",
        "MOGPLEX_UPSTREAM_STREAMS_PER_TOKEN": "3",
        "MOGPLEX_MAX_RESPONSE_BYTES": "2MB",
        "MOGPLEX_MAX_STREAM_EVENT_BYTES": "512KB",
        "MOGPLEX_REJECTED_TOKEN_SECONDS": "5",
    }
    settings = Settings.from_env(env)
    assert (settings.upstream_connections, settings.upstream_per_token) == (8, 2)
    assert (settings.upstream_streams, settings.upstream_streams_per_token) == (10, 3)
    assert (settings.max_response_bytes, settings.max_stream_event_bytes) == (2 * 1024 * 1024, 512 * 1024)
    assert GateLimits.from_settings(settings) == GateLimits(2, 10, 3, 5.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MOGPLEX_UPSTREAM_CONNECTIONS", "0"),
        ("MOGPLEX_UPSTREAM_PER_TOKEN", "2MB"),
        ("MOGPLEX_UPSTREAM_STREAMS", "many"),
        ("MOGPLEX_MAX_RESPONSE_BYTES", "4GB"),
        ("MOGPLEX_MAX_STREAM_EVENT_BYTES", "-1"),
    ],
)
def test_a_bad_limit_is_a_config_error_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
