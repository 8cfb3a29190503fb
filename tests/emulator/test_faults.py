"""Fault injection over real HTTP and through the control endpoints; the request log that counts calls."""

from __future__ import annotations

import time

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN, ConnectionDropped, Emulator, EmulatorConfig
from tests.emulator.support import API, FIXTURES, error_of, served, start_body

pytestmark = pytest.mark.anyio
REPOS = f"{API}/repos"


async def test_html_502_is_the_proxy_page_not_an_envelope() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault("html_502")
            response = await api.client.get(REPOS)
            after = await api.client.get(REPOS)
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert response.text.strip() == (FIXTURES / "html_502.html").read_text().strip()
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code", "retry_after"),
    [
        ("unavailable_503", 503, "SERVICE_UNAVAILABLE", "60"),
        ("internal_500", 500, "INTERNAL_ERROR", None),
        ("rate_limited_429", 429, "RATE_LIMITED", "60"),
    ],
)
async def test_status_faults_answer_envelopes_with_retry_after(
    kind: str, status: int, code: str, retry_after: str | None
) -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault(kind)
            default = await api.client.get(REPOS)
            api.handle.emulator.inject_fault(kind, retry_after=2)
            custom = await api.client.get(REPOS)
    assert error_of(default) == (status, code) and error_of(custom) == (status, code)
    assert default.headers.get("retry-after") == retry_after
    assert custom.headers.get("retry-after") == (None if retry_after is None else "2")


async def test_faults_count_down_and_match_method_and_path() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault("internal_500", count=2, method="POST", path=f"{API}/runs")
            repos = await api.client.get(REPOS)
            starts = [(await api.start(key="same")).status_code for _ in range(3)]
            records = [(record.path, record.fault) for record in api.handle.emulator.requests]
    assert repos.status_code == 200 and starts == [500, 500, 202]
    assert [fault for _, fault in records] == [None, "internal_500", "internal_500", None]


async def test_delay_answers_normally_after_the_delay() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault("delay", delay=0.3)
            began = time.monotonic()
            response = await api.client.get(REPOS)
            elapsed = time.monotonic() - began
    assert response.status_code == 200 and elapsed >= 0.3


async def test_hang_never_answers_until_the_client_gives_up() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault("hang", path=REPOS)
            with pytest.raises(httpx2.ReadTimeout):
                await api.client.get(REPOS, timeout=0.3)
            after = await api.client.get(REPOS)
            hung = api.handle.emulator.requests[0]
    assert after.status_code == 200
    assert (hung.fault, hung.status) == ("hang", None)


async def test_drop_after_commit_creates_the_run_but_never_answers() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            emulator = api.handle.emulator
            emulator.inject_fault("drop_after_commit", method="POST", path=f"{API}/runs")
            with pytest.raises(httpx2.TransportError):
                await api.start("Ship it", key="retry-me")
            created = emulator.run_ids()
            retried = await api.start("Ship it", key="retry-me")
    assert len(created) == 1
    assert retried.status_code == 202
    assert (retried.json()["data"]["runId"], retried.json()["data"]["replayed"]) == (created[0], True)


async def test_control_endpoints_arm_list_and_clear_faults_over_http() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            armed = await api.client.post(
                "/_emulator/faults", json={"kind": "unavailable_503", "count": 2, "retry_after": 1, "path": REPOS}
            )
            listed = (await api.client.get("/_emulator/faults")).json()["data"]["faults"]
            hit = await api.client.get(REPOS)
            cleared = await api.client.delete("/_emulator/faults")
            after = await api.client.get(REPOS)
            bad_kind = await api.client.post("/_emulator/faults", json={"kind": "meteor"})
            bad_count = await api.client.post("/_emulator/faults", json={"kind": "hang", "count": "x"})
            count = api.handle.emulator.request_count()
    assert armed.status_code == 201 and listed[0]["kind"] == "unavailable_503" and listed[0]["remaining"] == 2
    assert error_of(hit) == (503, "SERVICE_UNAVAILABLE") and hit.headers["retry-after"] == "1"
    assert cleared.status_code == 200 and after.status_code == 200
    assert bad_kind.status_code == 400 and "meteor" in bad_kind.json()["error"]["message"]
    assert bad_count.status_code == 400
    assert count == 2  # control calls are not upstream calls


async def test_control_endpoints_list_runs_and_requests_and_reset() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            run_id = await api.start_id("[scenario:endless] x")
            runs = (await api.client.get("/_emulator/runs")).json()["data"]["runs"]
            requests = (await api.client.get("/_emulator/requests")).json()["data"]["requests"]
            reset = await api.client.post("/_emulator/reset")
            gone = await api.client.get(f"{API}/runs/{run_id}")
            after = api.handle.emulator.request_count(method="GET", path_prefix=f"{API}/runs/")
    assert [(run["runId"], run["scenario"]) for run in runs] == [(run_id, "endless")]
    assert [(request["method"], request["path"], request["status"]) for request in requests] == [
        ("POST", f"{API}/runs", 202)
    ]
    assert reset.status_code == 200 and error_of(gone) == (404, "NOT_FOUND") and after == 1


async def test_in_process_transport_serves_and_raises_on_a_dropped_connection() -> None:
    emulator = Emulator(EmulatorConfig())
    transport = httpx2.ASGITransport(app=emulator.asgi_app())
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Idempotency-Key": "k"}
    with anyio.fail_after(10):
        async with httpx2.AsyncClient(transport=transport, base_url="http://emulator", headers=headers) as client:
            repos = await client.get(REPOS)
            emulator.inject_fault("drop_after_commit")
            with pytest.raises(ConnectionDropped):
                await client.post(f"{API}/runs", json=start_body())
    assert repos.status_code == 200 and len(emulator.run_ids()) == 1
    assert emulator.request_count("POST") == 1 and emulator.requests[-1].status is None


@pytest.mark.parametrize(
    ("kind", "media", "starts"),
    [
        ("oversized_body", "application/json", b'{"ok": true, "data": {'),
        ("oversized_sse_line", "text/event-stream", b"data: xxx"),
        ("oversized_sse_event", "text/event-stream", b"data: xxx"),
    ],
)
async def test_oversized_faults_stream_exactly_their_size_armed_over_the_control_api(
    kind: str, media: str, starts: bytes
) -> None:
    with anyio.fail_after(10):
        async with served() as api:
            armed = await api.client.post("/_emulator/faults", json={"kind": kind, "size": 300_000, "path": REPOS})
            async with api.client.stream("GET", REPOS) as response:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            bad_size = await api.client.post("/_emulator/faults", json={"kind": kind, "size": 0})
            requests = (await api.client.get("/_emulator/requests")).json()["data"]
    assert armed.status_code == 201 and armed.json()["data"]["faults"][0]["size"] == 300_000
    assert response.headers["content-type"].startswith(media) and body.startswith(starts)
    assert len(body) == 300_000 and requests["requests"][0]["body_bytes"] == 300_000
    if kind == "oversized_body":
        assert body.endswith(b'"}}')
    else:
        assert b"\n\n" not in body, "no event ever ends"
        assert (b"\n" in body) == (kind == "oversized_sse_event")
    assert bad_size.status_code == 400 and "size" in bad_size.json()["error"]["message"]


async def test_the_request_log_tags_tokens_and_counts_the_most_in_flight_at_once() -> None:
    with anyio.fail_after(10):
        async with served() as api:
            api.handle.emulator.inject_fault("delay", count=3, path=REPOS, delay=0.3)
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(api.client.get, REPOS)
            data = (await api.client.get("/_emulator/requests")).json()["data"]
    tags = {record["token_tag"] for record in data["requests"]}
    assert len(tags) == 1 and DEMO_TOKEN not in str(data)
    (tag,) = tags
    assert data["peakInFlight"][tag] == 3
