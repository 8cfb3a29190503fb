"""A repository name passed as repoId (issue 21, item 9): refused, naming the id one read-only lookup found.

Against the real emulator's repositories, in both protocol eras: the refusal carries the id a model needs for
its next call, never starts a run, and sends at most one `GET /repos` (none for input that is not a name).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mogplex_mcp.emulator import EmulatorConfig
from mogplex_mcp.emulator.config import DEMO_INSTALLATION_ID, default_repos
from tests.server.harness import MODES, Mode, Session, session

pytestmark = pytest.mark.anyio

REPOS = "/api/v1/mogplex/repos"
WEB = "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6"  # acme/web in the emulator
OTHER_WEB = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"  # beta/web, added where a name must be ambiguous


def _with_second_web() -> EmulatorConfig:
    beta = {"id": OTHER_WEB, "full_name": "beta/web", "installation_id": DEMO_INSTALLATION_ID,
            "default_branch": "main", "root_directory": None}  # fmt: skip
    return EmulatorConfig(speed=50.0, repos=[*default_repos(), beta])


async def _refused(s: Session, repo_id: str, *, lookups: int = 1) -> str:
    """start_run with `repo_id`: an error, no run, no POST, and exactly `lookups` GETs of /repos."""
    emu = s.emulator.emulator
    posts, gets, total = emu.request_count("POST"), emu.request_count("GET", REPOS), emu.request_count()
    refused = await s.error("start_run", repoId=repo_id, prompt="Fix the login page")
    assert emu.request_count("POST") == posts and emu.run_ids() == [], "a name must never start a run"
    assert emu.request_count("GET", REPOS) - gets == lookups, refused
    assert emu.request_count() - total == lookups, "only the read-only lookup may reach Mogplex"
    assert refused.startswith("start_run: invalid arguments: repoId"), refused
    return refused


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["web", "acme/web", "ACME/Web", "WEB", " acme/web "])
async def test_a_repository_name_is_refused_with_its_id(tmp_path: Path, mode: Mode, name: str) -> None:
    async with session(tmp_path, mode) as s:
        refused = await _refused(s, name)
        assert f"its id is {WEB} (acme/web)" in refused, refused
        assert f"call start_run with repoId: {WEB}" in refused and "No run was started" in refused
        started = await s.ok("start_run", repoId=WEB, prompt="Fix the login page")  # the id it gave works
        assert started["run"]["repoId"] == WEB


@pytest.mark.parametrize("mode", MODES)
async def test_a_name_two_owners_share_lists_both_ids_and_picks_none(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode, config=_with_second_web()) as s:
        refused = await _refused(s, "web")
        assert "2 repositories have that name" in refused, refused
        assert f"acme/web (id {WEB})" in refused and f"beta/web (id {OTHER_WEB})" in refused
        assert "its id is" not in refused, "an ambiguous name must not be resolved to one repository"
        exact = await _refused(s, "beta/web")  # owner/name is exact even where the name alone is not
        assert f"its id is {OTHER_WEB} (beta/web)" in exact and WEB not in exact, exact


@pytest.mark.parametrize("mode", MODES)
async def test_a_name_that_matches_nothing_says_so_and_names_no_id(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        missing = await _refused(s, "acme/mobile")
        assert "no repository matches the name 'acme/mobile'" in missing and "list_repos" in missing, missing
        partial = await _refused(s, "we")  # part of a name is not a name: shown as candidates, not resolved
        assert "no repository is named exactly 'we'" in partial and f"acme/web (id {WEB})" in partial, partial
        assert "its id is" not in missing + partial


@pytest.mark.parametrize("mode", MODES)
async def test_a_failed_lookup_still_refuses_clearly_without_an_id(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        emu = s.emulator.emulator
        emu.inject_fault("internal_500", count=100, method="GET", path=REPOS)
        posts = emu.request_count("POST")
        refused = await s.error("start_run", repoId="acme/web", prompt="Fix the login page")
        emu.clear_faults()
        assert emu.request_count("POST") == posts and emu.run_ids() == []
        assert refused.startswith("start_run: invalid arguments: repoId 'acme/web' is not a repository id"), refused
        assert "looking the name up failed" in refused and "HTTP 500" in refused, refused
        assert WEB not in refused and "call list_repos with query 'acme/web'" in refused.lower()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("junk", ["acme/web/extra", "../repos", "we b", "r\x00", "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f"])
async def test_what_is_neither_an_id_nor_a_name_sends_nothing(tmp_path: Path, mode: Mode, junk: str) -> None:
    async with session(tmp_path, mode) as s:
        refused = await _refused(s, junk, lookups=0)
        assert "is not a repository id" in refused and "Nothing was sent to Mogplex" in refused, refused


@pytest.mark.parametrize("mode", MODES)
async def test_other_invalid_arguments_are_named_before_any_lookup(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        before = s.emulator.emulator.request_count()
        refused = await s.error("start_run", repoId="web", prompt="Fix it", baseBranch="a..b")
        assert "baseBranch" in refused and s.emulator.emulator.request_count() == before, refused
