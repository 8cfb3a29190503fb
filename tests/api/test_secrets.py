"""The token goes into the Authorization header and nowhere else: not errors, reprs, tracebacks or logs."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable

import httpx2
import pytest

from mogplex_mcp.api import MogplexClient, MogplexError, RetryPolicy
from mogplex_mcp.config import Settings
from tests.api.support import (
    RUN_ID,
    TOKEN,
    FakeClock,
    Reply,
    Upstream,
    make_client,
    reply_error,
    reply_fixture,
    reply_html_502,
    reply_json,
    reply_redirect,
)

pytestmark = pytest.mark.anyio

# An OAuth-style bearer: nothing token-shaped about it, so only knowing the secret can scrub it.
OAUTH_TOKEN = "eyJhbGciOiJSUzI1NiJ9.c3ViamVjdA.c2lnbmF0dXJl"


def echoing(token: str) -> list[Reply]:
    """Upstream answers that repeat the caller's token back in every place they can."""
    return [
        reply_json(401, {"ok": False, "error": {"code": "UNAUTHORIZED", "message": f"Bearer {token} is revoked"}}),
        reply_json(403, {"ok": False, "error": {"code": "FORBIDDEN", "message": f"{token} lacks write"}}),
        reply_json(500, {"ok": False, "error": {"code": "INTERNAL_ERROR", "message": f"crash near {token}"}}),
        reply_json(200, {"ok": False, "error": {"code": "WEIRD", "message": token}}),
        reply_json(200, {"ok": True, "data": {"run": {"runId": RUN_ID, "status": 5, "error": token}}}),
        reply_redirect(302, f"https://elsewhere.example/{token}/x?token={token}"),
        reply_redirect(307, f"/login?next=%2F&token={token}"),
        httpx2.ConnectError(f"could not send header 'Authorization: Bearer {token}'"),
        httpx2.ReadTimeout(f"timed out reading for {token}"),
        httpx2.RemoteProtocolError(f"Illegal header value b'Bearer {token}'"),
        reply_html_502(),
    ]


def rendered(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *map(str, exc.args), "".join(traceback.format_exception(exc))])


@pytest.mark.parametrize("token", [TOKEN, OAUTH_TOKEN])
async def test_no_error_text_contains_the_token(token: str) -> None:
    replies = echoing(token)
    upstream = Upstream(list(replies))
    caught: list[MogplexError] = []
    async with make_client(upstream, token=token, retry=RetryPolicy(max_retries=0)) as client:
        for _ in replies:
            with pytest.raises(MogplexError) as info:
                await client.get_run(RUN_ID)
            caught.append(info.value)
    assert len(caught) == len(replies)
    for exc in caught:
        assert token not in rendered(exc), type(exc).__name__
    assert all(request.headers["authorization"] == f"Bearer {token}" for request in upstream.requests)


async def test_refusals_before_sending_do_not_repeat_the_token() -> None:
    broken = "mog_Zq8RkT2v Lm4Np6Xw9Yb3"
    async with make_client(Upstream(), token=broken) as client:
        with pytest.raises(MogplexError) as info:
            await client.get_run(RUN_ID)
    assert "mog_Zq8RkT2v" not in rendered(info.value)
    async with make_client(Upstream()) as client:
        with pytest.raises(MogplexError) as info:
            await client.get_run(TOKEN)  # a token pasted where a runId belongs
    assert TOKEN not in rendered(info.value)


def test_client_and_settings_reprs_mask_the_token() -> None:
    client = MogplexClient(base_url="https://mogplex.com", token=TOKEN)
    settings = Settings(token=TOKEN)
    for text in (repr(client), str(client), repr(settings), str(settings)):
        assert TOKEN not in text
        assert TOKEN[4:12] not in text
        assert "mog_…" in text


async def test_no_log_record_carries_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    upstream = Upstream(
        [
            reply_redirect(308, f"https://mogplex.com/api/v1/mogplex/runs/{RUN_ID}"),
            reply_error("SERVICE_UNAVAILABLE", {"Retry-After": "1"}),
            httpx2.ConnectError(f"refused for Bearer {TOKEN}"),
            reply_fixture("get_run_200.json"),
            reply_json(401, {"ok": False, "error": {"code": "UNAUTHORIZED", "message": f"{TOKEN} revoked"}}),
        ],
        clock=clock,
    )
    calls: list[Callable[[MogplexClient], Awaitable[object]]] = [
        lambda client: client.get_run(RUN_ID),
        lambda client: client.cancel_run(RUN_ID),
    ]
    async with make_client(upstream, base_url="https://www.mogplex.com") as client:
        await calls[0](client)
        with pytest.raises(MogplexError):
            await calls[1](client)
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("mogplex_mcp")]
    assert any(f"GET /runs/{RUN_ID} -> 200" in message for message in messages)
    assert any("retrying in" in message for message in messages)
    for record in caplog.records:
        everything = f"{record.getMessage()} {record.args!r} {record.exc_text or ''} {vars(record)!r}"
        assert TOKEN not in everything
        assert "authorization" not in record.getMessage().lower()
