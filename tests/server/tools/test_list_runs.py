"""list_runs through real clients: newest first, filters, paging, restarts, per-token isolation, refresh budget."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from mogplex_mcp.emulator import OTHER_USER_TOKEN, EmulatorConfig, running_emulator
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.follower import FollowSettings
from tests.server.harness import FAST_FOLLOW, MODES, Mode, Session, session

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/mogplex/runs/"


async def _finish(s: Session, *run_ids: str) -> None:
    for _ in range(20):
        waited = await s.ok("wait_for_runs", runIds=list(run_ids), mode="all", timeoutSeconds=10)
        if waited["done"]:
            assert set(waited["finished"]) == set(run_ids)
            return
    raise AssertionError("the runs did not finish")


async def _all_pages(s: Session, **arguments: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        page = await s.ok("list_runs", **arguments, **({"cursor": cursor} if cursor else {}))
        seen += [run["runId"] for run in page["runs"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("mode", MODES)
async def test_runs_are_listed_newest_first_with_filters_and_pages(tmp_path: Path, mode: Mode) -> None:
    async with session(tmp_path, mode) as s:
        repos = [repo["id"] for repo in (await s.ok("list_repos"))["repos"]]
        first = (await s.start("First task [scenario:success]", repoId=repos[0]))["run"]["runId"]
        second = (await s.start("Second task [scenario:endless]", repoId=repos[1]))["run"]["runId"]
        third = await s.start("Third task with mog_SecretInAPrompt1234567 [scenario:no_changes]", repoId=repos[0])
        third_id = third["run"]["runId"]
        await _finish(s, first, third_id)

        listed = await s.ok("list_runs")
        assert [run["runId"] for run in listed["runs"]] == [third_id, second, first]
        assert "seen through this server" in listed["summary"] and "no run listing" in listed["coverage"]
        by_id = {run["runId"]: run for run in listed["runs"]}
        assert by_id[first]["status"] == "success" and by_id[first]["pullRequestUrl"].startswith("https://")
        assert by_id[first]["changedFilesTotal"] == 2, "a followed run's events show what it changed"
        assert by_id[third_id]["codeChanged"] is False and by_id[third_id]["pullRequestUrl"] is None
        assert by_id[second]["terminal"] is False and by_id[second]["statusSource"] in ("live", "refreshed")
        assert by_id[first]["title"].startswith("First task") and by_id[first]["createdAt"]
        assert "mog_SecretInAPrompt" not in by_id[third_id]["title"] and "[redacted]" in by_id[third_id]["title"]

        active = await s.ok("list_runs", status="active")
        assert [run["runId"] for run in active["runs"]] == [second]
        finished = await s.ok("list_runs", status="finished")
        assert [run["runId"] for run in finished["runs"]] == [third_id, first]
        on_repo = await s.ok("list_runs", repoId=repos[1])
        assert [run["runId"] for run in on_repo["runs"]] == [second]

        assert await _all_pages(s, limit=1) == [third_id, second, first]
        assert await _all_pages(s, limit=2, status="finished") == [third_id, first]
        bad = await s.error("list_runs", cursor="not-a-cursor")
        assert "cursor" in bad and "Omit it" in bad


async def test_the_list_survives_a_restart_and_refreshes_active_runs_within_the_budget(tmp_path: Path) -> None:
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        async with session(tmp_path, "legacy", emulator=emu) as s:
            done = (await s.start("Finish quickly [scenario:success]"))["run"]["runId"]
            await _finish(s, done)
            running = [(await s.start(f"Endless task {n} [scenario:endless]"))["run"]["runId"] for n in range(4)]
        log = emu.emulator
        async with session(tmp_path, "auto", emulator=emu, list_refresh_max=2) as s:  # same state dir: restarted
            before = log.request_count("GET", EVENTS)
            listed = await s.ok("list_runs", limit=10)
            reads = log.request_count("GET", EVENTS) - before
        by_id = {run["runId"]: run for run in listed["runs"]}
        assert set(by_id) == {done, *running}
        assert by_id[done]["statusSource"] == "final" and by_id[done]["pullRequestUrl"].startswith("https://")
        sources = sorted(by_id[run_id]["statusSource"] for run_id in running)
        assert sources == ["refreshed", "refreshed", "remembered", "remembered"]
        assert listed["refreshed"] == 2 and listed["notRefreshed"] == 2
        assert reads == 2, "one upstream read per refreshed run, none for the rest"
        assert all(by_id[run_id]["statusAsOf"] for run_id in running)


@pytest.mark.parametrize("mode", MODES)
async def test_each_token_sees_only_its_own_runs(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        async with session(tmp_path, mode, emulator=emu) as s:
            mine = (await s.start("Mine [scenario:success]"))["run"]["runId"]
        async with session(tmp_path, mode, emulator=emu, token=OTHER_USER_TOKEN) as other:
            empty = await other.ok("list_runs")
            assert empty["runs"] == [] and empty["count"] == 0 and "No runs" in empty["summary"]
            repo = (await other.ok("list_repos"))["repos"][0]["id"]
            theirs = (await other.ok("start_run", repoId=repo, prompt="Theirs [scenario:success]"))["run"]["runId"]
            assert [run["runId"] for run in (await other.ok("list_runs"))["runs"]] == [theirs]
        async with session(tmp_path, mode, emulator=emu) as s:
            assert [run["runId"] for run in (await s.ok("list_runs"))["runs"]] == [mine]


async def test_followed_runs_cost_no_refresh(tmp_path: Path) -> None:
    slow = FollowSettings(**{**FAST_FOLLOW.__dict__, "linger_seconds": 30.0})
    async with session(tmp_path, "legacy", follow=slow) as s:
        run_ids = [(await s.start(f"Endless {n} [scenario:endless]"))["run"]["runId"] for n in range(3)]
        await s.ok("wait_for_runs", runIds=run_ids, timeoutSeconds=1)  # followers now know them
        listed = await s.ok("list_runs")
        assert {run["statusSource"] for run in listed["runs"]} == {"live"}
        assert listed["refreshed"] == 0 and listed["notRefreshed"] == 0
        assert all(run["status"] == "streaming" for run in listed["runs"])


async def test_a_long_page_is_cut_to_stay_small_and_the_cursor_resumes_after_it(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy") as s:
        fingerprint = token_fingerprint(s.emulator.token)
        run_ids = [str(uuid.UUID(int=n, version=4)) for n in range(60)]
        for n, run_id in enumerate(run_ids):  # runs this server saw earlier, finished: no upstream read needed
            s.state.journal.remember_run(fingerprint, run_id, title=f"Task {n} " + "x" * 70, status="success")
        await s.ok("list_repos")  # the token was accepted just now: the cached list is served without a re-check
        before = s.emulator.emulator.request_count()
        first = await s.ok("list_runs", limit=100)
        assert 0 < first["count"] < 60 and "Cut short" in first["summary"] and first["nextCursor"]
        assert await _all_pages(s, limit=100) == list(reversed(run_ids))
        assert s.emulator.emulator.request_count() == before, "finished runs are listed from the journal alone"


async def test_refreshes_stop_where_the_tokens_pacer_has_no_room(tmp_path: Path) -> None:
    async with running_emulator(EmulatorConfig(speed=50.0)) as emu:
        async with session(tmp_path, "legacy", emulator=emu) as s:
            running = [(await s.start(f"Endless task {n} [scenario:endless]"))["run"]["runId"] for n in range(3)]
        one_a_minute = FollowSettings(**{**FAST_FOLLOW.__dict__, "requests_per_minute": 1})
        async with session(tmp_path, "auto", emulator=emu, follow=one_a_minute) as s:
            before = emu.emulator.request_count("GET", EVENTS)
            listed = await s.ok("list_runs")
            again = await s.ok("list_runs")
            reads = emu.emulator.request_count("GET", EVENTS) - before
        assert listed["refreshed"] == 1 and listed["notRefreshed"] == len(running) - 1
        assert again["refreshed"] == 0 and "last known status" in again["summary"]
        assert reads == 1, "the pacer's one request a minute is all list_runs may spend"
