"""The run viewer in a real headless Chromium, inside a test host built on ext-apps' AppBridge.

What a person sees: the card follows a run from pending to success and offers its pull request, hostile
event text stays text, Cancel (after a confirm) ends an endless run, a failure shows its error, a read-only
server's card (opened from get_run) offers no Cancel — with no console errors, and an open viewer costs the
upstream no more than a model's wait_for_run loop does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from playwright.async_api import expect

from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorConfig
from tests.e2e.support import REPO_ID, emulator_config, http_client, ok, run_to_end
from tests.viewer.support import Rig, bundle_host, viewer_rig

pytestmark = pytest.mark.anyio
# Long enough to see every phase at the viewer's 2 s refresh, short enough to keep the test quick:
# at speed 3 a success run is pending ~0.7 s (the start_run result shows it), streaming ~4 s.
SPEED = 3.0
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SEE = 15_000  # ms: the bound on waiting for something to appear (a wait on an event, not a timing claim)


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle_host(tmp_path_factory.mktemp("viewer-host"))


def _emulator(**overrides: Any) -> EmulatorConfig:
    return emulator_config(**({"speed": SPEED} | overrides))


def _run_requests(rig: Rig, run_id: str) -> int:
    """Upstream requests about one run, less the server's one-time probe for an event stream (a 404 here)."""
    records = rig.emu.emulator.requests
    return sum(1 for r in records if run_id in r.path and not (r.path.endswith("/stream") and r.status == 404))


async def test_the_card_follows_a_run_to_success_within_the_follower_budget(host_dir: Path, tmp_path: Path) -> None:
    async with viewer_rig(host_dir, tmp_path, _emulator()) as rig, anyio.create_task_group() as tg:
        # Beside the viewer, a model follows an identical run with wait_for_run: the budget to stay within.
        model_run: list[str] = []
        tg.start_soon(_model_follows_a_run, rig.url, model_run)
        started = await rig.show("start_run", repoId=REPO_ID, prompt="Add rate limiting [scenario:success]")
        run_id = started["run"]["runId"]
        status = rig.viewer.locator("#status")
        await expect(status).to_have_text("Pending", timeout=SEE)
        await expect(status).to_have_text("Running", timeout=SEE)
        await expect(rig.viewer.locator("#events li").first).not_to_have_class("empty", timeout=SEE)
        await rig.screenshot("running")
        await expect(status).to_have_text("Succeeded", timeout=SEE)
        open_pr = rig.viewer.locator("#open-pr")
        await expect(open_pr).to_be_visible()
        await expect(rig.viewer.locator("#changed")).to_have_text("Yes")
        await expect(rig.viewer.locator("#repo")).to_have_text("acme/api")
        await expect(rig.viewer.locator("#cancel")).to_be_hidden()
        await expect(rig.viewer.locator("#events li.finished")).to_have_count(1)
        await rig.screenshot("succeeded")
        await open_pr.click()
        await rig.page.wait_for_function("window.hostLog.openedLinks.length === 1")
        log = await rig.host_log()
        assert re.fullmatch(r"https://github\.com/acme/api/pull/\d+", log["openedLinks"][0])
        assert "get_run" not in log["toolCalls"], "a live run is refreshed through its follower, not get_run"
        with anyio.fail_after(30):
            while not model_run:  # noqa: ASYNC110 - the model's loop reports by appending
                await anyio.sleep(0.05)
        viewer_cost, model_cost = _run_requests(rig, run_id), _run_requests(rig, model_run[0])
        # One poll of slack: the two runs' phases need not line up with the follower's polls the same way.
        assert viewer_cost <= model_cost + 1, rig.emu.emulator.requests
        assert viewer_cost < len(log["toolCalls"]), "the viewer's refreshes are answered by the follower"
        assert rig.problems == []


async def _model_follows_a_run(url: str, done: list[str]) -> None:
    async with http_client(url, "legacy", None) as model:
        run = (await ok(model, "start_run", repoId=REPO_ID, prompt="Add rate limits [scenario:success]"))["run"]
        await run_to_end(model, run["runId"])
    done.append(run["runId"])


async def test_hostile_event_text_stays_text_and_cancel_ends_an_endless_run(host_dir: Path, tmp_path: Path) -> None:
    async with viewer_rig(host_dir, tmp_path, _emulator()) as rig:
        prompt = f"Loop forever [scenario:endless] [say:{HOSTILE}]"
        started = await rig.show("start_run", "dark", repoId=REPO_ID, prompt=prompt)
        status = rig.viewer.locator("#status")
        await expect(status).to_have_text("Running", timeout=SEE)
        said = rig.viewer.locator("#events li .msg", has_text="onerror")
        await expect(said).to_have_text(HOSTILE, timeout=SEE)
        frame = rig.viewer_frame()
        assert await frame.evaluate("document.querySelectorAll('img').length") == 0
        assert await frame.evaluate("window.__pwned === undefined")
        # The host's theme and its style variables (the test host's dark background is #1f1e1d) are applied.
        assert await frame.evaluate("document.documentElement.dataset.theme") == "dark"
        card_background = "getComputedStyle(document.getElementById('card')).backgroundColor"
        assert await frame.evaluate(card_background) == "rgb(31, 30, 29)"
        await rig.screenshot("running-dark")
        await rig.viewer.locator("#copy-id").click()
        await expect(rig.viewer.locator("#note")).to_have_text("Run ID copied.")
        assert await rig.page.evaluate("navigator.clipboard.readText()") == started["run"]["runId"]

        await rig.viewer.locator("#cancel").click()
        confirm = rig.viewer.locator("#confirm")
        await expect(confirm).to_be_visible()
        await rig.viewer.locator("#confirm-no").click()
        await expect(confirm).to_be_hidden()
        await expect(status).to_have_text("Running")
        await rig.viewer.locator("#cancel").click()
        await rig.viewer.locator("#confirm-yes").click()
        await expect(status).to_have_text("Cancelled", timeout=SEE)
        await expect(rig.viewer.locator("#cancel")).to_be_hidden()
        assert (await rig.host_log())["toolCalls"].count("cancel_run") == 1
        assert rig.problems == []


async def test_a_failed_run_shows_its_error(host_dir: Path, tmp_path: Path) -> None:
    async with viewer_rig(host_dir, tmp_path, _emulator(speed=6.0)) as rig:
        await rig.show("start_run", repoId=REPO_ID, prompt="Break the tests [scenario:failure]")
        await expect(rig.viewer.locator("#status")).to_have_text("Failed", timeout=SEE)
        await expect(rig.viewer.locator("#error")).to_contain_text("exited with code 1")
        await expect(rig.viewer.locator("#open-pr")).to_be_hidden()
        await expect(rig.viewer.locator("#events li.failed")).to_have_count(1)
        await rig.screenshot("failed")
        assert rig.problems == []


async def test_a_read_only_server_s_viewer_opened_from_get_run_offers_no_cancel(host_dir: Path, tmp_path: Path) -> None:
    async with viewer_rig(host_dir, tmp_path, _emulator(), read_only=True) as rig:
        run_id = await _started_upstream(rig, "Loop forever [scenario:endless]")  # by someone else, as it were
        await rig.show("get_run", runId=run_id)
        await expect(rig.viewer.locator("#status")).to_have_text("Running", timeout=SEE)
        await expect(rig.viewer.locator("#events li.log").first).to_be_visible(timeout=SEE)
        await expect(rig.viewer.locator("#copy-id")).to_be_enabled()
        assert await rig.viewer.locator("#cancel").is_hidden()
        assert "cancel_run" not in (await rig.host_log())["toolCalls"]
        assert rig.problems == []


async def _started_upstream(rig: Rig, prompt: str) -> str:
    """A run started straight at the emulator, not through this (read-only) server."""
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Idempotency-Key": "viewer-read-only"}
    async with httpx2.AsyncClient(base_url=rig.emu.base_url) as http:
        response = await http.post("/api/v1/mogplex/runs", json={"repoId": REPO_ID, "prompt": prompt}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["runId"])
