"""POST /runs validation as production does it: headers, prompt, harness, branches, rootDirectory, repo."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mogplex_mcp.emulator import EmulatorConfig
from tests.emulator.support import API, MISSING_UUID, REPO_API, REPO_INFRA, REPO_WEB, error_of, served

pytestmark = pytest.mark.anyio
NO_LIMITS = EmulatorConfig(rate_limit_per_minute=0, start_limits=(0, 0, 0))

BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no repoId", {"prompt": "x"}, "repoId"),
    ("blank prompt", {"repoId": REPO_API, "prompt": " \n\t "}, "prompt"),
    ("prompt not a string", {"repoId": REPO_API, "prompt": 42}, "prompt"),
    ("prompt too long", {"repoId": REPO_API, "prompt": "x" * 100_001}, "prompt"),
    ("unknown harness", {"repoId": REPO_API, "prompt": "x", "harness": "mogplex"}, "harness"),
    ("branch with space", {"repoId": REPO_API, "prompt": "x", "baseBranch": "my branch"}, "branch"),
    ("branch HEAD", {"repoId": REPO_API, "prompt": "x", "workingBranch": "HEAD"}, "branch"),
    ("branch ends .lock", {"repoId": REPO_API, "prompt": "x", "baseBranch": "main.lock"}, "branch"),
    ("branch with ..", {"repoId": REPO_API, "prompt": "x", "baseBranch": "a..b"}, "branch"),
    ("branch with @{", {"repoId": REPO_API, "prompt": "x", "baseBranch": "a@{1}"}, "branch"),
    ("branch with ~", {"repoId": REPO_API, "prompt": "x", "baseBranch": "a~1"}, "branch"),
    ("branch leading /", {"repoId": REPO_API, "prompt": "x", "baseBranch": "/main"}, "branch"),
    ("branch non-ascii", {"repoId": REPO_API, "prompt": "x", "baseBranch": "fix-é"}, "branch"),
    (
        "same branches",
        {"repoId": REPO_API, "prompt": "x", "createBranch": True, "baseBranch": "dev", "workingBranch": "dev"},
        "workingBranch",
    ),
    (
        "default base reused",
        {"repoId": REPO_API, "prompt": "x", "createBranch": True, "workingBranch": "main"},
        "workingBranch",
    ),
    ("root dir ..", {"repoId": REPO_API, "prompt": "x", "rootDirectory": "apps/../secrets"}, "rootDirectory"),
    ("root dir //", {"repoId": REPO_API, "prompt": "x", "rootDirectory": "apps//web"}, "rootDirectory"),
    ("root dir NUL", {"repoId": REPO_API, "prompt": "x", "rootDirectory": "apps\x00"}, "rootDirectory"),
    ("mode not a string", {"repoId": REPO_API, "prompt": "x", "mode": 3}, "mode"),
    ("unknown scenario", {"repoId": REPO_API, "prompt": "[scenario:nope] x"}, "scenario"),
]


@pytest.mark.parametrize(("case", "body", "mentions"), BAD_BODIES, ids=[case for case, _, _ in BAD_BODIES])
async def test_invalid_start_bodies_are_400_and_say_what_is_wrong(case: str, body: Any, mentions: str) -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            response = await api.client.post(f"{API}/runs", json=body, headers={"Idempotency-Key": "k"})
            created = api.handle.emulator.run_ids()
    assert error_of(response) == (400, "BAD_REQUEST")
    assert mentions in response.json()["error"]["message"]
    assert created == []


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
async def test_a_body_that_is_not_a_json_object_is_400(raw: bytes) -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            response = await api.client.post(f"{API}/runs", content=raw, headers={"Idempotency-Key": "k"})
    assert error_of(response) == (400, "BAD_REQUEST")


@pytest.mark.parametrize(("key", "accepted"), [(None, False), ("", False), ("k" * 201, False), ("k" * 200, True)])
async def test_idempotency_key_is_required_and_at_most_200_chars(key: str | None, accepted: bool) -> None:
    headers = {} if key is None else {"Idempotency-Key": key}
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            response = await api.client.post(f"{API}/runs", json={"repoId": REPO_API, "prompt": "x"}, headers=headers)
    if accepted:
        assert response.status_code == 202
    else:
        assert error_of(response) == (400, "BAD_REQUEST")
        assert "Idempotency-Key" in response.json()["error"]["message"]


async def test_a_repo_the_caller_does_not_own_is_404() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            response = await api.client.post(
                f"{API}/runs", json={"repoId": MISSING_UUID, "prompt": "x"}, headers={"Idempotency-Key": "k"}
            )
    assert error_of(response) == (404, "NOT_FOUND")


async def test_defaults_come_from_the_repo_and_values_are_trimmed() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            web = (await api.start("  Fix the header  ", repoId=REPO_WEB)).json()["data"]
            infra = (await api.start("x", repoId=REPO_INFRA, harness="claude-code", createBranch="yes")).json()["data"]
            explicit = await api.start(
                "x", baseBranch="dev", workingBranch="feat/x", createBranch=True, rootDirectory="/services/api/"
            )
            longest = await api.start("y" * 100_000)
    assert web["rootDirectory"] == "apps/web" and web["harness"] == "codex"
    assert web["branch"] == {"base": "main", "working": "main", "createBranch": False}
    assert infra["branch"] == {"base": "main", "working": "main", "createBranch": False}  # only literal true
    assert infra["harness"] == "claude-code"
    assert explicit.json()["data"]["branch"] == {"base": "dev", "working": "feat/x", "createBranch": True}
    assert explicit.json()["data"]["rootDirectory"] == "services/api"
    assert longest.status_code == 202


async def test_create_branch_without_a_name_generates_one_from_the_prompt() -> None:
    with anyio.fail_after(10):
        async with served(NO_LIMITS) as api:
            data = (await api.start("Refactor the auth module!", createBranch=True)).json()["data"]
    working = data["branch"]["working"]
    assert working.startswith("mogplex/run/") and "refactor-the-auth-module" in working
    assert working != data["branch"]["base"]
