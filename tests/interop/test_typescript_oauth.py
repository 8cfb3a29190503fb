"""The TypeScript SDK's auth provider signs in through the OAuth front door (the page filled in Chromium), then
lists the tools and calls one as the signed-in user; and, its access token short-lived
(`--oauth-access-token-minutes`), keeps working across expiries by refreshing, without signing in again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from mogplex_mcp.emulator import DEMO_TOKEN
from tests.interop.support import CLIENT_LIMIT, INTEROP, NODE, requires_node
from tests.oauth.support import REDIRECT_URI, BrowserSignIn, new_page, oauth_server, options_from_cli
from tests.viewer.support import launched_browser

pytestmark = [pytest.mark.anyio, requires_node]


class Lines:
    """A child's stdout, line by line."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._chunks = TextReceiveStream(process.stdout)
        self._buffer = ""

    async def next_with(self, prefix: str) -> str:
        while True:
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                if line.startswith(prefix):
                    return line.removeprefix(prefix)
            self._buffer += await self._chunks.receive()


async def test_the_typescript_sdk_auth_provider_signs_in_and_calls_tools(tmp_path: Path) -> None:
    assert NODE is not None
    lifetime = 2.0  # seconds, so the client meets expiry twice
    flags = options_from_cli("--oauth-access-token-minutes", str(lifetime / 60))
    async with oauth_server(tmp_path, **flags) as server, launched_browser() as browser:
        config = json.dumps(
            {"url": server.url, "redirectUrl": REDIRECT_URI, "refreshRounds": 2, "expireMs": (lifetime + 0.5) * 1000}
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "NO_COLOR": "1"}
        process = await anyio.open_process([NODE, "ts_oauth_client.mjs", config], cwd=INTEROP, env=env)
        async with process:
            with anyio.fail_after(CLIENT_LIMIT):
                lines = Lines(process)
                authorize_url = await lines.next_with("AUTHORIZE ")
                sign_in = BrowserSignIn(await new_page(browser), DEMO_TOKEN)
                await sign_in.redirect_handler(authorize_url)
                code = (await sign_in.callback_handler()).code
                assert process.stdin is not None
                await process.stdin.send(f"CODE {code}\n".encode())
                report = json.loads(await lines.next_with("REPORT "))
                await process.wait()
    assert report["signIns"] == 1 and report["tokenPrefix"] == "mcpa_" and report["hasRefreshToken"]
    assert "start_run" in report["tools"] and "list_repos" in report["tools"]
    assert not report["listRepos"]["isError"] and report["listRepos"]["structured"]["repos"]
    assert "TypeScript Assistant" in sign_in.page_html[0]
    # Past each expiry the SDK refreshed (both tokens new: the refresh token rotates) and the calls kept working,
    # with no second trip to the sign-in page.
    assert len(report["rounds"]) == 2
    for round_ in report["rounds"]:
        assert round_["newAccessToken"] and round_["newRefreshToken"] and round_["tokenPrefix"] == "mcpa_", round_
        assert not round_["isError"] and round_["repos"] > 0 and round_["tools"] == len(report["tools"]), round_
    assert report["authorizeRequests"] == 1
