"""The viewer's browser rig: the real server over HTTP against the emulator, a test host page, headless Chromium.

The host page (host/host.js, bundled with the pinned esbuild) is served from the MCP server's own origin and
talks to `/mcp` with the MCP TypeScript client; the viewer runs in its sandboxed iframe through ext-apps'
AppBridge. Chromium is Debian's package, driven by Playwright's Python API (no browser download).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Frame, FrameLocator, Page, async_playwright

from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import DEMO_TOKEN, EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app
from mogplex_mcp.server.transport.serving import running_http
from tests.provision import missing, require_executable

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
INSTALL = "bash .ci/install-viewer"
ARTIFACTS = Path(os.environ.get("VIEWER_ARTIFACTS", HERE / "artifacts"))
Asgi = Callable[..., Any]


def chromium_path() -> str:
    """Debian's chromium (a skip off CI when absent, a failure under CI=true)."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return require_executable("chromium", "apt-get install -y chromium")


NPM_INSTALL_LIMIT_SECONDS = 600


def ensure_npm_packages() -> None:
    """The pinned npm packages of tests/viewer, installed from the lock (`npm ci`) when missing and npm is here.

    A fresh clone's `uv run pytest` provisions them itself, once, under a file lock; without npm the caller
    skips with the install command (under CI=true it fails: `.ci/run` installs Node).
    """
    if (NODE_MODULES / ".bin" / "esbuild").exists() and (NODE_MODULES / "@modelcontextprotocol" / "ext-apps").is_dir():
        return
    if shutil.which("npm") is None:
        missing("npm (the viewer tests bundle their host page with the pinned npm packages)", INSTALL)
    with (HERE / ".npm-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (NODE_MODULES / ".bin" / "esbuild").exists():
            return
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE, capture_output=True, text=True, timeout=NPM_INSTALL_LIMIT_SECONDS, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            missing(f"the viewer tests' npm packages (npm ci took over {NPM_INSTALL_LIMIT_SECONDS} s)", INSTALL)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            missing(f"the viewer tests' npm packages (npm ci failed: {tail})", INSTALL)


def bundle_host(out_dir: Path) -> Path:
    """host.html plus host.js bundled with the pinned esbuild into `out_dir`; returns the directory."""
    ensure_npm_packages()
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    if not esbuild.exists():
        missing("the viewer tests' npm packages (tests/viewer/node_modules)", INSTALL)
    out_dir.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(esbuild), str(HERE / "host" / "host.js"), "--bundle", "--format=iife", "--log-level=warning",
         f"--outfile={out_dir / 'host.bundle.js'}"],
        check=True, cwd=HERE,
    )  # fmt: skip
    shutil.copy(HERE / "host" / "host.html", out_dir / "host.html")
    return out_dir


class WithHostPage:
    """An ASGI wrapper that serves the host page's files under /host/ and passes everything else to `app`."""

    def __init__(self, app: Asgi, directory: Path) -> None:
        self.app, self.directory = app, directory

    @property
    def state(self) -> Any:
        """The wrapped Starlette app's state, which the HTTP runner reads (e.g. its metrics hook)."""
        return getattr(self.app, "state")  # noqa: B009 - Asgi is a bare callable type

    async def __call__(self, scope: dict[str, Any], receive: Asgi, send: Asgi) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith("/host/"):
            await self.app(scope, receive, send)
            return
        file = self.directory / path.removeprefix("/host/")
        kind = "text/html" if file.suffix == ".html" else "text/javascript"
        found = file.is_file() and file.parent == self.directory
        body = file.read_bytes() if found else b"not found"
        headers = [(b"content-type", f"{kind}; charset=utf-8".encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Rig:
    """One server + emulator + browser page; `problems` collects console errors and page errors."""

    url: str
    emu: EmulatorHandle
    page: Page
    problems: list[str] = field(default_factory=list)

    @property
    def viewer(self) -> FrameLocator:
        return self.page.frame_locator("iframe")

    def viewer_frame(self) -> Frame:
        frames = [frame for frame in self.page.frames if frame is not self.page.main_frame]
        assert len(frames) == 1, f"expected one viewer frame, found {len(frames)}"
        return frames[0]

    async def show(self, tool: str, theme: str = "light", **arguments: Any) -> dict[str, Any]:
        """Call `tool` as the model would and show the viewer for its result, as a host does."""
        result: dict[str, Any] = await self.page.evaluate(
            "([tool, args, theme]) => window.startHost(tool, args, theme)", [tool, arguments, theme]
        )
        await self.page.wait_for_function("window.hostLog.ready === true")
        return result

    async def host_log(self) -> dict[str, Any]:
        log: dict[str, Any] = await self.page.evaluate("window.hostLog")
        return log

    async def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"  # the directory is made by bundle_host
        await self.page.locator("#frame").screenshot(path=str(path))
        return path


@asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def viewer_rig(host_dir: Path, tmp_path: Path, emulator: EmulatorConfig, **settings: Any) -> AsyncIterator[Rig]:
    """The emulator, the server over HTTP on loopback (token from its environment), and a browser on the host page."""
    async with running_emulator(emulator) as emu:
        values: dict[str, Any] = {"token": DEMO_TOKEN, "base_url": emu.base_url, "state_dir": tmp_path / "state"}
        values |= {"retry_budget_seconds": 3.0, "read_timeout": 5.0} | settings
        app = WithHostPage(build_http_app(Settings(**values), HttpOptions(port=0)), host_dir)
        # The browser closes first: its open MCP event stream would otherwise hold the server's shutdown.
        async with running_http(app) as mcp_url, launched_browser() as browser:  # type: ignore[arg-type]
            context = await browser.new_context(viewport={"width": 680, "height": 620}, device_scale_factor=2)
            await context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = await context.new_page()
            rig = Rig(mcp_url, emu, page)
            page.on("console", lambda message: _note_console(rig, message))
            page.on("pageerror", lambda error: rig.problems.append(f"page error: {error}"))
            await page.goto(mcp_url.removesuffix("/mcp") + "/host/host.html")
            yield rig


def _note_console(rig: Rig, message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        rig.problems.append(f"console {message.type}: {message.text}")
