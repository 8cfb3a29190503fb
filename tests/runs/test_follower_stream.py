"""The event stream the followers use: SSE parsing, what each kind of answer becomes, production's shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.api.errors import AuthenticationError, RateLimitedError, ServerError
from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.api.stream import (
    EventStreamClient,
    StreamItem,
    StreamUnsupportedError,
    stream_clients,
    stream_item,
)
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.follower import FollowerHub, FollowSettings, RunFollower
from mogplex_mcp.server.state import follower_client_factory

pytestmark = pytest.mark.anyio

SseMessage = httpx2.ServerSentEvent

RUN_ID = "82fd2a53-1a67-4718-8e58-51052af58da8"
TOKEN = "mog_StreamTestToken12345"
BASE = "https://mogplex.test"


def test_the_run_message_and_events_become_typed_items() -> None:
    run = {"runId": RUN_ID, "status": "streaming"}
    event = {"id": "e1", "type": "log", "message": "hi", "payload": {}, "createdAt": "2026-08-01T00:00:00Z"}
    assert isinstance(stream_item(SseMessage(event="run", data=json.dumps(run))), RunDetail)
    assert isinstance(stream_item(SseMessage(event="run", data=json.dumps({"run": run}))), RunDetail)
    item = stream_item(SseMessage(data=json.dumps(event), id="e1"))
    assert isinstance(item, RunEvent) and item.type == "log"
    typed_by_field = stream_item(SseMessage(event="tool_started", data=json.dumps({"message": "x"}), id="e2"))
    assert isinstance(typed_by_field, RunEvent) and (typed_by_field.id, typed_by_field.type) == ("e2", "tool_started")


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '{"no": "id or type"}'])
def test_unreadable_messages_are_skipped_not_fatal(data: str) -> None:
    assert stream_item(SseMessage(data=data)) is None


@asynccontextmanager
async def answering(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[EventStreamClient, list[httpx2.Request]]]:
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(status, content=body, headers=headers or {})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
        yield EventStreamClient(token=TOKEN, http=http), seen


async def read_all(client: EventStreamClient, **kw: Any) -> list[StreamItem]:
    async with client.open(BASE, RUN_ID, **kw) as items:
        return [item async for item in items]


async def test_multi_line_data_comments_and_sticky_ids_parse_per_the_sse_rules() -> None:
    body = (
        b": connected\n\nid: e1\nevent: log\n"
        b'data: {"type": "log", "message":\ndata:  "one"}\n\n'
        b"id: e9\n\nretry: 10\n\n"
        b'data: {"type": "log", "message": "two"}\n\n'
    )
    async with answering(200, body, {"content-type": "text/event-stream"}) as (client, _):
        items = await read_all(client)
    assert [(item.id, item.message) for item in items if isinstance(item, RunEvent)] == [("e1", "one"), ("e9", "two")]


async def test_a_stream_yields_the_run_then_its_events_and_resumes_with_last_event_id() -> None:
    body = (
        ": connected\n\n"
        f'event: run\ndata: {{"runId": "{RUN_ID}", "status": "streaming"}}\n\n'
        'id: e2\r\nevent: log\r\ndata: {"id": "e2", "type": "log", "message": "two"}\r\n\r\n'
    ).encode()
    async with answering(200, body, {"content-type": "text/event-stream"}) as (client, seen):
        items = await read_all(client, last_event_id="e1")
    assert [type(item).__name__ for item in items] == ["RunDetail", "RunEvent"]
    sent = seen[0]
    assert sent.url.path == f"/api/v1/mogplex/runs/{RUN_ID}/events/stream"
    assert sent.headers["last-event-id"] == "e1" and sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (404, b'{"ok": false, "error": {"code": "NOT_FOUND", "message": "Run not found"}}', "application/json"),
        (404, b"<html>Not Found</html>", "text/html"),
        (405, b"", "text/plain"),
        (200, b'{"ok": true, "data": {}}', "application/json"),
    ],
)
async def test_a_deployment_without_the_stream_is_a_typed_signal(status: int, body: bytes, content_type: str) -> None:
    async with answering(status, body, {"content-type": content_type}) as (client, _):
        with pytest.raises(StreamUnsupportedError):
            await read_all(client)


async def test_other_failures_are_the_clients_typed_errors_without_the_token() -> None:
    limited = b'{"ok": false, "error": {"code": "RATE_LIMITED", "message": "slow down"}}'
    async with answering(429, limited, {"retry-after": "7", "content-type": "application/json"}) as (client, _):
        with pytest.raises(RateLimitedError) as caught:
            await read_all(client)
    assert caught.value.retry_after == 7
    async with answering(500, f"<html>boom {TOKEN}</html>".encode(), {"content-type": "text/html"}) as (client, _):
        with pytest.raises(ServerError) as failed:
            await read_all(client)
    assert TOKEN not in str(failed.value)
    async with answering(307, b"", {"location": "/login?next=/x"}) as (client, _):
        with pytest.raises(AuthenticationError):
            await read_all(client)


class ProductionShapedUpstream:
    """A MockTransport handler shaped like production's newer code: the first 200 events by polling,
    the rest from the stream, which opens with `event: run`, names each event's type, and closes
    after the terminal event."""

    def __init__(self, total: int) -> None:
        self.events = [{"id": f"e{n:03d}", "type": "log", "message": f"step {n}", "payload": {}} for n in range(total)]
        self.events[220] = {
            "id": "e220",
            "type": "status_changed",
            "payload": {"from": "streaming", "to": "awaiting_input"},
        }
        self.events[-1] = {"id": self.events[-1]["id"], "type": "finished", "payload": {"exit_code": 0}}
        self.done = False
        self.resumed_after: list[str | None] = []

    def run(self, status: str) -> dict[str, Any]:
        return {"runId": RUN_ID, "status": status}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/events/stream"):
            last = request.headers.get("last-event-id")
            self.resumed_after.append(last)
            start = next(n for n, e in enumerate(self.events) if e["id"] == last) + 1 if last else 0
            frames = [": connected\n\n", f"event: run\ndata: {json.dumps(self.run('streaming'))}\n\n"]
            frames += [f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in self.events[start:]]
            self.done = True
            return httpx2.Response(200, content="".join(frames).encode(), headers={"content-type": "text/event-stream"})
        data = {"run": self.run("success" if self.done else "streaming"), "events": self.events[:200]}
        return httpx2.Response(200, json={"ok": True, "data": data})


async def test_a_follower_reads_a_production_shaped_stream_past_200_events() -> None:
    upstream = ProductionShapedUpstream(total=260)
    statuses: list[str] = []

    async def listener(follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        if status_changed and follower.run is not None:
            statuses.append(follower.run.status)

    settings = Settings(token=TOKEN, base_url=BASE, state_dir=Path("/nonexistent"))
    async with (
        httpx2.AsyncClient(transport=httpx2.MockTransport(upstream)) as http,
        anyio.create_task_group() as tg,
    ):
        follow = FollowSettings(poll_interval=0.01, max_poll_interval=0.02, linger_seconds=1.0)
        hub = FollowerHub(
            tg, follower_client_factory(settings, lambda: http), follow, make_stream=stream_clients(lambda: http)
        )
        hub.add_listener(listener)
        async with hub.watch(TOKEN, RUN_ID) as follower:
            with anyio.fail_after(10):
                await follower.wait_stopped()
    assert upstream.resumed_after == ["e199"], "the stream must resume after the last polled event"
    assert [event.id for event in follower.events()] == [event["id"] for event in upstream.events]
    assert not follower.window_exhausted and follower.saw_terminal_event
    assert statuses == ["streaming", "awaiting_input", "success"], "status from the stream, the final one by poll"
