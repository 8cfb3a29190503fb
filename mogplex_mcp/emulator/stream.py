"""GET /runs/{runId}/events/stream (observed flavour): server-sent events, resumable, closed after the end.

Each event is one SSE message: `id:` the event id, `data:` the event JSON (same shape as in /events), no
`event:` field. A `Last-Event-ID` header resumes after that event. The stream ends once the run is terminal
and its last event was sent. Comment lines keep idle connections alive.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mogplex_mcp.emulator.routes import API, RunsApi
from mogplex_mcp.emulator.runs import Run

if TYPE_CHECKING:
    from mogplex_mcp.emulator.app import Emulator

POLL_SECONDS = 0.05
KEEPALIVE_SECONDS = 15.0


def stream_routes(api: RunsApi) -> list[Route]:
    return [Route(f"{API}/runs/{{run_id}}/events/stream", EventStream(api).handle, methods=["GET"])]


def sse_frame(event: dict[str, Any]) -> str:
    return f"id: {event['id']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


def resume_position(events: list[dict[str, Any]], last_event_id: str | None) -> int:
    """Index after the event named by Last-Event-ID; an unknown id replays from the start."""
    if last_event_id:
        for index, event in enumerate(events):
            if event["id"] == last_event_id.strip():
                return index + 1
    return 0


class EventStream:
    """Serves one run's events as they appear on the emulator clock."""

    def __init__(self, api: RunsApi) -> None:
        self.api = api
        self.emu: Emulator = api.emu

    async def handle(self, request: Request) -> Response:
        caller = self.api.guard(request, self.api.read_scope())
        if isinstance(caller, Response):
            return caller
        run = self.api.find_run(request, caller)
        if isinstance(run, Response):
            return run
        frames = self.frames(run, request.headers.get("last-event-id"))
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers)

    async def frames(self, run: Run, last_event_id: str | None) -> AsyncIterator[str]:
        sent = resume_position(run.events(self.emu.clock()), last_event_id)
        quiet = 0.0
        while not self.emu.closing.is_set():
            now = self.emu.clock()
            events = run.events(now)
            for event in events[sent:]:
                yield sse_frame(event)
            quiet = 0.0 if len(events) > sent else quiet + POLL_SECONDS
            sent = len(events)
            if run.is_terminal(now):
                return
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keepalive\n\n"
            await anyio.sleep(POLL_SECONDS)
