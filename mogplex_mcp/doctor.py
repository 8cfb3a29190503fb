"""`mogplex-mcp doctor`: check settings, token and upstream access; print ready-to-paste host configs.

Each check is ok, a warning, a problem with the fix, or skipped (`--no-network`: said so, and "Ready" then says
it covered only the offline checks). The token is never printed, only its masked form.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import anyio
import httpx2

from mogplex_mcp import __version__
from mogplex_mcp.api import (
    API_PREFIX,
    AuthenticationError,
    MogplexClient,
    MogplexError,
    PermissionDeniedError,
    TransportError,
    UnexpectedResponseError,
)
from mogplex_mcp.config import (
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    REDIS_URL_ENV,
    TOKEN_ENV,
    ConfigError,
    Settings,
    clean_env_value,
    mask_redis_url,
    mask_secrets,
)
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from mogplex_mcp.runs.local.journal_heal import is_damage, side_lock

Level = Literal["ok", "warn", "problem", "skipped"]
TOKEN_SHAPE = re.compile(r"^mog_[A-Za-z0-9]+$")
TOKEN_PLACEHOLDER = "mog_YOUR_TOKEN"  # noqa: S105 - a placeholder shown in configs
CREATE_TOKEN = "create one in Mogplex → Settings → Personal access tokens (scopes read + write)"  # noqa: S105


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    level: Level
    what: str
    fix: str | None = None


def token_checks(raw: str | None) -> list[Check]:
    """Presence and shape only (`mog_` + base62); never the value."""
    token = clean_env_value(raw)
    if raw is not None and token is None and raw.strip():
        fix = f"set the token in the host's settings; {CREATE_TOKEN}"
        return [Check("problem", f"{TOKEN_ENV} is an unfilled placeholder", fix)]
    if not token:
        return [Check("problem", f"{TOKEN_ENV} is not set", f"{CREATE_TOKEN}, then set {TOKEN_ENV} in the host config")]
    settings = Settings(token=token)
    checks = []
    if raw is not None and raw != raw.strip():
        checks.append(Check("warn", f"{TOKEN_ENV} has surrounding whitespace (ignored)", "remove it from the config"))
    return checks + _token_shape(token, settings)


def _token_shape(token: str, settings: Settings) -> list[Check]:
    if token[0] in "\"'" or token[-1] in "\"'":
        return [Check("problem", f"{TOKEN_ENV} includes quote characters", "paste the token without quotes")]
    if token.lower().startswith("bearer "):
        return [Check("problem", f"{TOKEN_ENV} starts with 'Bearer '", "set only the token itself (mog_…)")]
    if not TOKEN_SHAPE.match(token):
        return [
            Check(
                "warn",
                f"{TOKEN_ENV} is set ({settings.masked_token}) but is not a Mogplex PAT (mog_ + letters/digits)",
                f"if requests fail with 401, {CREATE_TOKEN}",
            )
        ]
    return [Check("ok", f"{TOKEN_ENV} is set: {settings.masked_token}")]


async def access_checks(settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None) -> list[Check]:
    """Reachability and auth with one read call (list_repos, limit 1); without a token, reachability only."""
    if not settings.token:
        return [await _reachable_without_token(settings, transport)]
    started = time.monotonic()
    try:
        async with MogplexClient.from_settings(settings, transport=transport) as client:
            repos = await client.list_repos(limit=1)
    except AuthenticationError:
        return [
            _reached(settings, started),
            Check("problem", "the token was rejected (401)", f"it is mistyped, expired or revoked: {CREATE_TOKEN}"),
        ]
    except PermissionDeniedError as exc:
        refused = Check("problem", f"the token may not read ({exc.message[:120]})", CREATE_TOKEN)
        return [_reached(settings, started), refused]
    except UnexpectedResponseError as exc:
        return [
            Check(
                "problem",
                f"{settings.base_url} answered, but not like the Mogplex API ({str(exc)[:120]})",
                f"check {BASE_URL_ENV} (default {DEFAULT_BASE_URL})",
            )
        ]
    except TransportError as exc:
        return [_unreachable(settings, str(exc))]
    except MogplexError as exc:
        return [_reached(settings, started), Check("problem", f"list_repos failed: {str(exc)[:160]}", None)]
    found = f"{len(repos)} repository visible" if repos else "no repositories connected yet"
    extra = None if repos else "connect a GitHub repository in Mogplex before starting runs"
    return [_reached(settings, started), Check("ok" if repos else "warn", f"the token works: {found}", extra)]


async def _reachable_without_token(settings: Settings, transport: httpx2.AsyncBaseTransport | None) -> Check:
    url = f"{settings.base_url}{API_PREFIX}/repos"
    try:
        async with httpx2.AsyncClient(transport=transport, timeout=settings.connect_timeout + 5) as http:
            response = await http.get(url, follow_redirects=False)
    except httpx2.HTTPError as exc:
        return _unreachable(settings, type(exc).__name__)
    return Check("ok", f"{settings.base_url} is reachable (HTTP {response.status_code} without a token)")


def _reached(settings: Settings, started: float) -> Check:
    return Check("ok", f"{settings.base_url} is reachable ({(time.monotonic() - started) * 1000:.0f} ms)")


def _unreachable(settings: Settings, detail: str) -> Check:
    return Check(
        "problem",
        f"cannot reach {settings.base_url} ({detail[:120]})",
        f"check your network/proxy, or {BASE_URL_ENV} (default {DEFAULT_BASE_URL})",
    )


def state_dir_check(settings: Settings) -> Check:
    path = settings.state_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "warn",
            f"state dir {path} is not writable ({exc.strerror}): start de-duplication falls back to memory",
            "set MOGPLEX_MCP_STATE_DIR to a writable directory",
        )
    return Check("ok", f"state dir {path} is writable (start journal)")


def journal_check(settings: Settings) -> Check | None:
    """SQLite's full integrity check of the start journal, if there is one (not just its first page)."""
    path = settings.state_dir / JOURNAL_FILE_NAME
    if not path.exists():
        return None
    # The shared side lock for the whole check, not just the connect (which takes no SQLite lock): a server
    # healing the file takes it exclusively before moving it, so it cannot move the file under this check,
    # and the report is about the file that is there, not a copy moved aside.
    with side_lock(path, exclusive=False, wait=2.0) as held:
        if held is False:
            return Check(
                "warn",
                f"start journal {path} could not be checked: a server is repairing it right now",
                "run doctor again in a moment",
            )
        try:
            with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)) as db:
                found = [str(row[0]) for row in db.execute("PRAGMA integrity_check(5)")]
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                return Check(
                    "warn", f"start journal {path} could not be checked ({exc})", "run doctor again in a moment"
                )
            found = [str(exc)]
    if found == ["ok"]:
        return Check("ok", f"start journal {path} passed SQLite's integrity check")
    detail = "; ".join(line for text in found for line in text.splitlines() if not line.startswith("***"))
    return Check(
        "problem",
        f"start journal {path} is damaged ({detail[:200]}): starts it held may not be recognised as retries",
        "quit every host running mogplex-mcp: the next server to start moves it aside (kept, with the time in its "
        "name) and starts a new file; or move the file aside yourself",
    )


def redis_check(settings: Settings, network: bool) -> Check:
    """Whether the shared store (`MOGPLEX_REDIS_URL`) answers; its password shown only as ***."""
    shown = mask_redis_url(settings.redis_url or "")
    if not network:
        return Check("skipped", f"shared state in Redis at {shown}: not checked (--no-network)")
    from mogplex_mcp.runs.backends import shared_store_problem

    problem = shared_store_problem(settings)
    if problem:
        return Check("problem", problem, f"start Redis, or fix {REDIS_URL_ENV}; `serve` refuses to start without it")
    return Check("ok", f"shared state in Redis at {shown} answers (replicas share start de-duplication and budgets)")


def redis_setup_checks(settings: Settings) -> list[Check]:
    """Redis's eviction policy, maxmemory, memory use and persistence, as mogplex-mcp needs them."""
    from mogplex_mcp.runs.backends import shared_store_findings
    from mogplex_mcp.runs.store import StoreUnavailableError

    try:
        return [Check(f.level, f.what, f.fix) for f in shared_store_findings(settings)]
    except StoreUnavailableError as exc:
        return [Check("warn", f"Redis settings could not be read: {exc}", "allow INFO for this user")]


def uvx_command() -> str:
    """`uvx`, by absolute path when found: GUI hosts start servers with a minimal PATH."""
    return shutil.which("uvx") or "uvx"


def host_configs(base_url: str, uvx: str) -> dict[str, str]:
    """Ready-to-paste snippets, keyed by host; the token is always a placeholder."""
    env = {TOKEN_ENV: TOKEN_PLACEHOLDER}
    if base_url != DEFAULT_BASE_URL:
        env[BASE_URL_ENV] = base_url
    server = {"command": uvx, "args": ["mogplex-mcp"], "env": env}
    vscode = {
        "inputs": [
            {
                "type": "promptString",
                "id": "mogplex-token",
                "description": "Mogplex personal access token (mog_…)",
                "password": True,
            }
        ],
        "servers": {"mogplex": {"type": "stdio", **server, "env": {**env, TOKEN_ENV: "${input:mogplex-token}"}}},
    }
    env_flags = " ".join(f"-e {key}={value}" for key, value in env.items())
    codex_env = ", ".join(f'{key} = "{value}"' for key, value in env.items())
    return {
        "Claude Desktop (claude_desktop_config.json)": _json({"mcpServers": {"mogplex": server}}),
        "VS Code (.vscode/mcp.json — safe to commit: the token is prompted for)": _json(vscode),
        "Cursor (~/.cursor/mcp.json)": _json({"mcpServers": {"mogplex": server}}),
        "Claude Code": f"claude mcp add mogplex {env_flags} -- {uvx} mogplex-mcp",
        "Codex (~/.codex/config.toml)": "\n".join(
            [
                "[mcp_servers.mogplex]",
                f'command = "{uvx}"',
                'args = ["mogplex-mcp"]',
                f"env = {{ {codex_env} }}",
                "startup_timeout_sec = 60  # the first uvx run downloads the package",
            ]
        ),
    }


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def render(checks: list[Check], configs: Mapping[str, str]) -> str:
    marks = {"ok": "ok     ", "warn": "warn   ", "problem": "PROBLEM", "skipped": "skipped"}
    lines = [f"mogplex-mcp doctor ({__version__})", ""]
    for check in checks:
        lines.append(f"  {marks[check.level]}  {check.what}")
        if check.fix:
            lines.append(f"             fix: {check.fix}")
    problems = sum(check.level == "problem" for check in checks)
    lines += ["", f"{problems} problem(s)." if problems else _ready(checks), ""]
    lines.append(f"Ready-to-paste configs (replace {TOKEN_PLACEHOLDER} with your token):")
    for host, snippet in configs.items():
        lines += ["", f"--- {host}", snippet]
    # The last word: whatever a check or a snippet quoted (a URL, a path, an error), no token shows.
    return mask_secrets("\n".join(lines)) + "\n"


def _ready(checks: list[Check]) -> str:
    """ "Ready." only when every check ran; otherwise what it means with the skipped ones not known."""
    if not any(check.level == "skipped" for check in checks):
        return "Ready."
    return (
        "Ready (offline checks only: the token and the connection were not checked — run doctor without --no-network)."
    )


def run_checks(
    env: Mapping[str, str],
    *,
    base_url: str | None = None,
    network: bool = True,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> tuple[list[Check], Settings | None]:
    checks = [
        Check(
            "ok",
            f"mogplex-mcp {__version__}, mcp {metadata.version('mcp')}, "
            f"Python {platform.python_version()} ({sys.executable})",
        )
    ]
    try:
        settings = Settings.from_env(env, base_url=base_url, connect_timeout=5.0, retry_budget_seconds=8.0)
    except ConfigError as exc:
        return [*checks, Check("problem", str(exc), "fix the value, or unset it to use the default")], None
    source = "--base-url" if base_url else (BASE_URL_ENV if clean_env_value(env.get(BASE_URL_ENV)) else "default")
    checks.append(Check("ok", f"base URL {settings.base_url} ({source})"))
    shown = Settings.from_env(env)  # as `serve` will run (the checks below use shorter timeouts)
    checks.append(
        Check(
            "ok",
            f"settings: read-only {'on' if shown.read_only else 'off'}; read timeout {shown.read_timeout:g} s; "
            f"{shown.max_retries} retries within {shown.retry_budget_seconds:g} s; "
            f"duplicate-start window {shown.dedupe_window_seconds:g} s",
        )
    )
    checks += token_checks(env.get(TOKEN_ENV))
    checks.append(state_dir_check(settings))
    if (journal := journal_check(settings)) is not None:
        checks.append(journal)
    if settings.redis_url:
        checks.append(redis_check(settings, network))
        if network and checks[-1].level == "ok":
            checks += redis_setup_checks(settings)
    if network:
        checks += anyio.run(lambda: access_checks(settings, transport=transport))
    else:
        checks.append(
            Check(
                "skipped",
                f"not checked (--no-network): whether {settings.base_url} is reachable and accepts the token",
                "run `mogplex-mcp doctor` without --no-network",
            )
        )
    return checks, settings


def main(
    *,
    base_url: str | None = None,
    network: bool = True,
    env: Mapping[str, str] | None = None,
    write: Callable[[str], object] = sys.stdout.write,
) -> int:
    """Print the report and the configs; exit 1 when any check is a problem."""
    the_env = os.environ if env is None else env
    checks, settings = run_checks(the_env, base_url=base_url, network=network)
    configs = host_configs(settings.base_url if settings else DEFAULT_BASE_URL, uvx_command())
    write(render(checks, configs))
    if not Path(uvx_command()).is_absolute():
        write("\nNote: uvx was not found on PATH; install uv (https://docs.astral.sh/uv/) and use its full path.\n")
    return 1 if any(check.level == "problem" for check in checks) else 0
