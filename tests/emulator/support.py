"""Helpers for the emulator's contract tests: a served emulator with a plain httpx2 client, fixtures, shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator

API = "/api/v1/mogplex"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO_API = "8f3a2b1c-1234-4abc-9def-1234567890ab"  # acme/api, default branch main
REPO_WEB = "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6"  # acme/web, root_directory apps/web
REPO_INFRA = "c0ffee00-7e57-4b1d-8a2c-0123456789ab"  # acme/infra, no default branch
MISSING_UUID = "00000000-0000-4000-8000-000000000000"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def keys(value: Any) -> set[str]:
    assert isinstance(value, dict), f"expected an object, got {value!r}"
    return set(value)


def run_keys() -> set[str]:
    return keys(fixture("get_run_200.json")["data"]["run"])


def event_keys() -> set[str]:
    return keys(fixture("events_documented_200.json")["data"]["events"][0])


def assert_run_shape(run: Any) -> None:
    """A RunDetail has exactly the fixture's keys, and its nested objects too."""
    expected = fixture("get_run_200.json")["data"]["run"]
    assert keys(run) == set(expected)
    assert keys(run["branch"]) == set(expected["branch"])
    assert keys(run["runtime"]) == set(expected["runtime"])


def start_body(prompt: str = "Add a health check endpoint", **fields: Any) -> dict[str, Any]:
    return {"repoId": REPO_API, "prompt": prompt, **fields}


class Api:
    """A tiny, deliberately independent client (not mogplex_mcp.api) for the emulator's endpoints."""

    def __init__(self, client: httpx2.AsyncClient, handle: EmulatorHandle) -> None:
        self.client = client
        self.handle = handle
        self._keys = 0

    async def start(
        self,
        prompt: str = "Add a health check endpoint",
        *,
        key: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> httpx2.Response:
        if key is None:
            self._keys += 1
            key = f"test-key-{self._keys}"
        headers = {"Idempotency-Key": key}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.post(f"{API}/runs", json=start_body(prompt, **fields), headers=headers)

    async def start_id(self, prompt: str = "Add a health check endpoint", **fields: Any) -> str:
        response = await self.start(prompt, **fields)
        assert response.status_code == 202, response.text
        return str(response.json()["data"]["runId"])

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{API}/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"]["run"])

    async def events(self, run_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        params = {} if limit is None else {"limit": str(limit)}
        response = await self.client.get(f"{API}/runs/{run_id}/events", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["data"]["events"])

    async def cancel(self, run_id: str) -> httpx2.Response:
        return await self.client.post(f"{API}/runs/{run_id}/cancel")


@asynccontextmanager
async def served(
    config: EmulatorConfig | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Api]:
    """A real loopback emulator and a client that sends the demo token."""
    async with running_emulator(config, clock=clock) as handle:
        headers = {"Authorization": f"Bearer {handle.token}"}
        async with httpx2.AsyncClient(base_url=handle.base_url, headers=headers, timeout=10.0) as client:
            yield Api(client, handle)


def error_of(response: httpx2.Response) -> tuple[int, str]:
    """(status, code) of an error envelope, checking it has exactly the envelope's keys."""
    body = response.json()
    assert keys(body) == {"ok", "error"} and body["ok"] is False
    assert keys(body["error"]) == {"code", "message"} and body["error"]["message"]
    return response.status_code, str(body["error"]["code"])
