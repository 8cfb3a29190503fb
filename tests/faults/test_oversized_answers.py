"""Oversized upstream answers (issue 11, finding 5): every body and stream event is read with a cap.

The emulator streams the oversized answers chunk by chunk and counts the body bytes it handed to the
socket: a client that stops at its cap makes it stop too (the connection closes), so the bytes sent
bound what the client could have buffered. Scaled down: a 1 MB cap against 50 MB answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mogplex_mcp.emulator import EmulatorConfig
from mogplex_mcp.emulator.traffic import RequestRecord
from tests.server.harness import session
from tests.server.resources.test_run_resources import until

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
CAP = 1 * MB
HUGE = 50 * MB
# What may be in flight past the cap when the client hangs up: socket buffers on both ends of loopback.
SLACK = 16 * MB
REPOS = "/api/v1/mogplex/repos"


def records(emulator: object, path: str) -> list[RequestRecord]:
    log = emulator.log  # type: ignore[attr-defined]
    return [record for record in log.snapshot() if record.path == path]


async def test_an_oversized_repo_list_is_a_clean_tool_error_naming_the_cap(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", max_response_bytes=CAP, max_retries=0) as s:
        s.emulator.emulator.inject_fault("oversized_body", method="GET", path=REPOS, size=HUGE)
        message = await s.error("list_repos")
        assert "oversized answer (more than 1 MB)" in message, message
        assert "Traceback" not in message
        (sent,) = records(s.emulator.emulator, REPOS)
        assert sent.fault == "oversized_body"
        assert sent.body_bytes <= CAP + SLACK < HUGE, "the client stopped reading near its cap"
        assert (await s.ok("list_repos"))["repos"], "the next call, with a sane answer, works"


async def test_an_answer_under_the_cap_is_read_whole(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", max_response_bytes=CAP) as s:
        s.emulator.emulator.inject_fault("oversized_body", method="GET", path=REPOS, size=CAP // 2)
        assert (await s.ok("list_repos"))["repos"] == [], "the padded envelope (no repos) was read and parsed"


@pytest.mark.parametrize("kind", ["oversized_sse_line", "oversized_sse_event"])
async def test_an_oversized_stream_is_dropped_and_reopened_while_tools_answer(tmp_path: Path, kind: str) -> None:
    config = EmulatorConfig(flavor="observed", speed=50.0, default_scenario="endless")
    async with session(tmp_path, "legacy", config=config, max_stream_event_bytes=CAP) as s:
        run_id = (await s.start())["run"]["runId"]
        stream_path = f"/api/v1/mogplex/runs/{run_id}/events/stream"
        s.emulator.emulator.inject_fault(kind, path=stream_path, size=HUGE)
        waited = await s.ok("wait_for_run", runId=run_id, timeoutSeconds=2)
        assert waited["finished"] is False and waited["run"]["runId"] == run_id

        def reopened() -> bool:
            streams = records(s.emulator.emulator, stream_path)
            return len(streams) >= 2 and streams[-1].fault is None and streams[-1].status == 200

        await until(reopened)
        first = records(s.emulator.emulator, stream_path)[0]
        assert first.fault == kind and first.body_bytes <= CAP + SLACK < HUGE
        follower = s.state.hub.get(s.settings.token or "", run_id)
        assert follower is not None
        await until(lambda: follower.streaming and follower.stream_failures == 0)  # the new stream delivers
        assert (await s.ok("get_run", runId=run_id))["run"]["status"] not in ("failed", "cancelled")
