"""Test doubles for the API client: a scripted upstream behind httpx2's MockTransport, and a fake clock."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.retry import RetryPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BASE_URL = "https://mogplex.com"
TOKEN = "mog_Zq8RkT2vLm4Np6Xw9Yb3Cd5F"
RUN_ID = "5b0c2a8e-3f1d-4c47-9a51-2f6e8d7c1a90"
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"

Reply = Callable[[httpx2.Request], httpx2.Response] | Exception


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def html_502() -> bytes:
    return (FIXTURES / "html_502.html").read_bytes()


def reply_html_502() -> Reply:
    return reply_raw(502, html_502(), "text/html")


def error_envelopes() -> dict[str, Any]:
    envelopes: dict[str, Any] = fixture("error_envelopes.json")
    return envelopes


def reply_json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A reply factory: each request gets a fresh response (a response's body can be read only once)."""

    def make(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body, headers=headers)

    return make


def reply_raw(status: int, content: bytes | str, content_type: str, headers: dict[str, str] | None = None) -> Reply:
    def make(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=content, headers={"content-type": content_type, **(headers or {})})

    return make


def reply_fixture(name: str, status: int = 200) -> Reply:
    return reply_json(status, fixture(name))


def reply_error(code: str, headers: dict[str, str] | None = None) -> Reply:
    entry = error_envelopes()[code]
    return reply_json(entry["status"], entry["body"], headers)


def reply_redirect(status: int, location: str) -> Reply:
    def make(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"location": location})

    return make


@dataclass
class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or a simulated request takes time)."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)
    sleep_started: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleep_started.append(self.now)
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Upstream:
    """Answers requests from a script, in order, then with `default`; records every request it sees."""

    script: list[Reply] = field(default_factory=list)
    default: Reply | None = None
    clock: FakeClock | None = None
    latency: float = 0.0
    requests: list[httpx2.Request] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.clock is not None:
            self.clock.now += self.latency
        if self.script:
            reply = self.script.pop(0)
        elif self.default is not None:
            reply = self.default
        else:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(reply, Exception):
            raise reply
        return reply(request)

    @property
    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def make_client(
    upstream: Upstream,
    *,
    clock: FakeClock | None = None,
    token: str | None = TOKEN,
    retry: RetryPolicy | None = None,
    base_url: str = BASE_URL,
    seed: int = 7,
    **options: Any,
) -> MogplexClient:
    clock = clock if clock is not None else (upstream.clock or FakeClock())
    return MogplexClient(
        base_url=base_url,
        token=token,
        transport=upstream.transport,
        retry=retry,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(seed),
        **options,
    )
