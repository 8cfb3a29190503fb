"""The viewer as MCP clients see it, no browser: bound only for Apps clients, a self-contained strict document.

Clients that do not advertise MCP Apps get tools/list and resources/list exactly as before (the snapshot in
tests/server/tools/snapshots/tools.json, unchanged); Apps clients get the same plus `_meta.ui.resourceUri` on the
tools whose result is one run, and the `ui://` resource in resources/list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import DEMO_TOKEN, running_emulator
from mogplex_mcp.server.app import create_server
from mogplex_mcp.server.viewer import RUN_TOOLS, VIEWER_URI
from tests.e2e.support import REPO_ID, emulator_config

pytestmark = pytest.mark.anyio
Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")
SNAPSHOT = Path(__file__).parents[1] / "server" / "tools" / "snapshots" / "tools.json"
# What the document may weigh: the pinned ext-apps build (~530 KB) is most of it; ours stays small.
MAX_DOCUMENT_CHARS = 600_000
MAX_OWN_CHARS = 40_000


class AppsHost(ClientExtension):
    """What a host that renders MCP Apps advertises."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


def _client(tmp_path: Path, mode: Mode, apps: bool, **settings: Any) -> Client:
    server = create_server(Settings(token=DEMO_TOKEN, state_dir=tmp_path, **settings))
    return Client(server, mode=mode, extensions=[AppsHost()] if apps else None)


async def _listed(client: Client) -> tuple[dict[str, dict[str, Any]], list[str]]:
    tools = (await client.list_tools()).tools
    resources = (await client.list_resources()).resources
    dumped = {t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools}
    return dumped, [str(r.uri) for r in resources]


@pytest.mark.parametrize("mode", MODES)
async def test_clients_without_apps_see_exactly_what_they_saw_before(tmp_path: Path, mode: Mode) -> None:
    async with _client(tmp_path, mode, apps=False) as client:
        tools, resources = await _listed(client)
    assert tools == json.loads(SNAPSHOT.read_text())
    assert all("_meta" not in tool for tool in tools.values())
    assert VIEWER_URI not in resources


@pytest.mark.parametrize("mode", MODES)
async def test_apps_clients_get_the_viewer_bound_to_the_run_tools_and_nothing_else_changed(
    tmp_path: Path, mode: Mode
) -> None:
    async with _client(tmp_path, mode, apps=True) as client:
        tools, resources = await _listed(client)
        document = await client.read_resource(VIEWER_URI)
    expected = json.loads(SNAPSHOT.read_text())
    bound = {name for name, tool in tools.items() if "_meta" in tool}
    assert (
        bound
        == set(RUN_TOOLS) & set(tools)
        == {"start_run", "get_run", "wait_for_run"} | ({"continue_run"} & set(tools))
    )
    for name, tool in tools.items():
        if name in bound:
            assert tool.pop("_meta") == {"ui": {"resourceUri": VIEWER_URI}}
        assert tool == expected[name], name
    assert VIEWER_URI in resources
    content = document.contents[0]
    assert content.mime_type == APP_MIME_TYPE
    assert content.meta == {"ui": {"csp": {}, "permissions": {"clipboardWrite": {}}, "prefersBorder": False}}


@pytest.mark.parametrize("mode", MODES)
async def test_tool_results_are_the_same_for_apps_and_other_clients(tmp_path: Path, mode: Mode) -> None:
    async with running_emulator(emulator_config()) as emu:
        results = []
        for apps in (False, True):
            async with _client(tmp_path / str(apps), mode, apps, base_url=emu.base_url) as client:
                repos = await client.call_tool("list_repos", {})
                started = await client.call_tool("start_run", {"repoId": REPO_ID, "prompt": f"Task {apps}"})
                assert started.structured_content is not None
                run = started.structured_content["run"]
            results.append((repos.model_dump(), sorted(started.structured_content), sorted(run), started.meta))
    assert results[0] == results[1]


def _config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="viewer-config">(.*?)</script>', html, re.S)
    assert found is not None
    config: dict[str, Any] = json.loads(found.group(1))
    return config


async def test_the_document_is_self_contained_under_a_strict_csp_and_small(tmp_path: Path) -> None:
    async with _client(tmp_path, "legacy", apps=True) as client:
        html = str(getattr((await client.read_resource(VIEWER_URI)).contents[0], "text", ""))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = dict(part.strip().split(" ", 1) for part in csp.group(1).split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'none'"
    script = html.split('<script type="module">', 1)[1].rsplit("</script>", 1)[0]
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    for source, text in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert policy[source] == f"'sha256-{digest}'", "only the shipped inline code may run: no eval, no inline"
    assert "unsafe" not in csp.group(1)
    outside_script = html.replace(script, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", outside_script), "nothing from the network"
    assert "innerHTML" not in script.rsplit("const ExtApps=", 1)[1], "our code writes text, never markup"
    assert _config(html) == {"canCancel": True, "waitSeconds": 2.0, "version": _config(html)["version"]}
    assert len(html) < MAX_DOCUMENT_CHARS
    own = len(html) - len(script.rsplit("const ExtApps=", 1)[0])
    assert own < MAX_OWN_CHARS


async def test_read_only_servers_serve_a_viewer_without_cancel(tmp_path: Path) -> None:
    async with _client(tmp_path, "legacy", apps=True, read_only=True) as client:
        tools, _ = await _listed(client)
        html = str(getattr((await client.read_resource(VIEWER_URI)).contents[0], "text", ""))
    assert _config(html)["canCancel"] is False
    assert {name for name, tool in tools.items() if "_meta" in tool} == {"get_run", "wait_for_run"}
