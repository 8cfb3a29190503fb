"""`mogplex-mcp demo`: the whole product offline — emulator, the real server over stdio, a real MCP client.

Starts the Mogplex API emulator on loopback, spawns `python -m mogplex_mcp serve` exactly as an MCP host
would (env passed explicitly), and walks a real `mcp.Client` through the workflow a model follows, printing
what each call returned. No token, no account, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextResourceContents

import mogplex_mcp
from mogplex_mcp.config import mask_token
from mogplex_mcp.emulator import EmulatorConfig, running_emulator

# A success run takes 14 simulated seconds; at 1.5x the whole demo takes about 15 s on a laptop.
DEFAULT_SPEED = 1.5
TASK = "Add a GET /healthz endpoint that returns the service version, with a test."
LOG_TEMPLATE = "mogplex://runs/{runId}/log"


class DemoFailed(RuntimeError):
    """A step did not do what the demo expects; the message says which and why."""


class Transcript:
    """Readable output: numbered steps, indented details, nothing else on stdout."""

    def __init__(self, write: Callable[[str], Any]) -> None:
        self._write = write
        self.started = time.monotonic()
        self._step = 0

    def step(self, text: str) -> None:
        self._step += 1
        self._write(f"\n[{self._step}] {text}\n")

    def line(self, text: str, indent: int = 4) -> None:
        self._write(" " * indent + text + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def server_parameters(base_url: str, token: str, state_dir: Path) -> StdioServerParameters:
    """How a host launches the server: a command plus an explicit env (hosts pass little else)."""
    package_parent = str(Path(mogplex_mcp.__file__).resolve().parent.parent)
    env = {
        "MOGPLEX_TOKEN": token,
        "MOGPLEX_BASE_URL": base_url,
        "MOGPLEX_MCP_STATE_DIR": str(state_dir),
        "MOGPLEX_LOG_LEVEL": "warning",
        "PYTHONPATH": package_parent,  # works from a source checkout as well as an install
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "mogplex_mcp", "serve"], env=env)


def structured(result: CallToolResult, tool: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise DemoFailed(f"{tool} failed: {text}")
    data: dict[str, Any] = result.structured_content
    return data


async def call(client: Client, out: Transcript, tool: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
    shown = ", ".join(f"{k}={_short(v)}" for k, v in arguments.items())
    out.line(f"→ {tool}({shown})")
    data = structured(await client.call_tool(tool, arguments, **kw), tool)
    out.line(f"← {data.get('summary', '')}")
    return data


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…'"


async def wait_until_done(client: Client, out: Transcript, run_id: str) -> dict[str, Any]:
    """Call wait_for_run until the run is terminal, printing each progress notification as it arrives."""

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        if message:
            out.line(f"  · {message}", indent=6)

    for _ in range(12):  # each call waits at most ~20 s; the demo run needs ~10 s in all
        data = await call(client, out, "wait_for_run", {"runId": run_id}, progress_callback=progress)
        if data["finished"]:
            return data
    raise DemoFailed(f"run {run_id} did not finish")


async def drive(client: Client, out: Transcript) -> None:
    """The walkthrough: repos → start → wait → events → log resource → a second run cancelled."""
    tools = [tool.name for tool in (await client.list_tools()).tools]
    info = client.server_info
    out.line(f"connected to {info.name if info else 'server'} {info.version if info else ''}")
    out.line(f"protocol {client.protocol_version}; tools: {', '.join(tools)}")

    out.step("Find the repository (list_repos)")
    repos = await call(client, out, "list_repos", {"limit": 10})
    for repo in repos["repos"]:
        out.line(f"  {repo['fullName']:<14} id {repo['id']}  default branch {repo.get('defaultBranch') or '(none)'}")
    repo = repos["repos"][0]

    out.step(f"Delegate a task to a coding agent on {repo['fullName']} (start_run)")
    started = await call(client, out, "start_run", {"repoId": repo["id"], "prompt": TASK, "createBranch": True})
    run_id = started["run"]["runId"]
    out.line(f"  runId {run_id}, status {started['run']['status']}, replayed {started['replayed']}")

    out.step("Wait for it, with live progress (wait_for_run, called again while it runs)")
    waited = await wait_until_done(client, out, run_id)
    run = waited["run"]
    out.line(f"  final status {run['status']}; pull request {run.get('pullRequestUrl') or 'none'}")

    out.step("See what the agent did (list_run_events)")
    events = await call(client, out, "list_run_events", {"runId": run_id, "limit": 50})
    for event in events["events"]:
        tool = f" {event['toolName']}" if event.get("toolName") else ""
        out.line(f"  {event['type']}{tool}: {_one_line(event.get('message'))}")

    out.step(f"Read the run's log resource ({LOG_TEMPLATE})")
    await read_log(client, out, run_id)

    out.step("Start a second run and cancel it (start_run, cancel_run)")
    second = await call(
        client,
        out,
        "start_run",
        {"repoId": repo["id"], "prompt": "Refactor the session store. [scenario:endless]"},
    )
    second_id = second["run"]["runId"]
    cancelled = await call(client, out, "cancel_run", {"runId": second_id})
    out.line(f"  outcome {cancelled['outcome']}")
    final = await wait_until_done(client, out, second_id)
    out.line(f"  final status {final['run']['status']}")
    if final["run"]["status"] != "cancelled":
        raise DemoFailed(f"the second run ended {final['run']['status']!r}, not 'cancelled'")


async def read_log(client: Client, out: Transcript, run_id: str) -> None:
    templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    if LOG_TEMPLATE not in templates:
        out.line("  (skipped: this build of the server has no run-log resource yet)")
        return
    uri = LOG_TEMPLATE.replace("{runId}", run_id)
    result = await client.read_resource(uri)
    text = "".join(c.text for c in result.contents if isinstance(c, TextResourceContents))
    lines = text.splitlines()
    for line in lines[:8]:
        out.line(f"  | {line[:110]}")
    if len(lines) > 8:
        out.line(f"  | … {len(lines) - 8} more lines")


def _one_line(text: str | None, limit: int = 90) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def run_demo(out: Transcript, speed: float = DEFAULT_SPEED) -> None:
    out.line("mogplex-mcp demo — offline: a local Mogplex API emulator, the real MCP server, a real MCP client.", 0)
    out.step("Start the Mogplex API emulator on loopback")
    async with running_emulator(EmulatorConfig(speed=speed)) as emulator:
        out.line(f"base URL {emulator.base_url}; demo token {mask_token(emulator.token)}; speed {speed:g}x")
        with tempfile.TemporaryDirectory(prefix="mogplex-demo-") as state_dir:
            params = server_parameters(emulator.base_url, emulator.token, Path(state_dir))
            out.step("Spawn the MCP server over stdio, as a host does: python -m mogplex_mcp serve")
            async with Client(params) as client:
                await drive(client, out)
    out.line(f"\nDone in {out.elapsed():.1f} s. Plug it into your host next: `mogplex-mcp doctor` prints configs.", 0)


def main(speed: float | None = None) -> int:
    out = Transcript(lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    try:
        anyio.run(run_demo, out, speed or DEFAULT_SPEED)
    except DemoFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    return 0
