"""CI: launch a packed Claude Desktop bundle the way Desktop does, and drive it with a real MCP client.

Unpacks the .mcpb, fills the manifest's `mcp_config` (`${__dirname}`, `${user_config.*}`: the token and base
URL of a local emulator, every other entry's default), starts it over stdio, and checks that the tools it
registers are the manifest's and that a tool call reaches the upstream. Usage: bundle_smoke.py BUNDLE.mcpb
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from mogplex_mcp.emulator import EmulatorConfig, running_emulator

# Machine settings uv may need to reach its index from CI (certificates, proxies, mirrors); never printed.
PASSTHROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "UV_INDEX_URL", "UV_CACHE_DIR")


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return text


def launch_parameters(bundle_dir: Path, manifest: dict[str, Any], user: dict[str, str]) -> StdioServerParameters:
    values = {"__dirname": str(bundle_dir)}
    for name, entry in manifest.get("user_config", {}).items():
        default = entry.get("default", "")
        text = str(default).lower() if isinstance(default, bool) else str(default)
        values[f"user_config.{name}"] = user.get(name, text)
    config = manifest["server"]["mcp_config"]
    env = {key: fill(value, values) for key, value in config.get("env", {}).items()}
    env |= {key: os.environ[key] for key in PASSTHROUGH if key in os.environ}
    return StdioServerParameters(
        command=fill(config["command"], values), args=[fill(arg, values) for arg in config["args"]], env=env
    )


async def smoke(bundle: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mogplex-bundle-") as tmp:
        bundle_dir = Path(tmp)
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(bundle_dir)
        manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
        async with running_emulator(EmulatorConfig(speed=20.0)) as emulator:
            user = {"token": emulator.token, "base_url": emulator.base_url}
            params = launch_parameters(bundle_dir, manifest, user)
            print(f"launching: {params.command} {' '.join(params.args)}", flush=True)
            async with Client(params, mode="legacy", read_timeout_seconds=300) as client:
                tools = [tool.name for tool in (await client.list_tools()).tools]
                expected = [tool["name"] for tool in manifest["tools"]]
                if tools != expected:
                    raise SystemExit(f"bundle registers {tools}, manifest lists {expected}")
                result = await client.call_tool("list_repos", {"limit": 1})
                if result.is_error or not result.structured_content:
                    raise SystemExit(f"list_repos through the bundle failed: {result.content}")
                print(f"bundle ok: {len(tools)} tools; list_repos -> {result.structured_content['summary']}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    anyio.run(smoke, Path(sys.argv[1]))
