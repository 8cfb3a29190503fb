"""The command line: version, help, the default command, lazy imports, configuration errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mogplex_mcp import __version__
from mogplex_mcp.cli import build_parser, main, normalize_argv
from mogplex_mcp.config import DEFAULT_BASE_URL
from mogplex_mcp.doctor import host_configs, token_checks

ROOT = Path(__file__).resolve().parent.parent
SERVE_FLAGS = (
    "--read-only",
    "--emulator",
    "--base-url",
    "--log-level",
    "--transport",
    "--host",
    "--port",
    "--stateless",
    "--allowed-host",
    "--allowed-origin",
    "--redis-url",
    "--public-url",
    "--oauth-access-token-minutes",
)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mogplex_mcp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mogplex-mcp {__version__}"


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("serve", "demo", "doctor", "emulator"):
        assert name in result.stdout


def test_serve_help_lists_every_flag() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in SERVE_FLAGS:
        assert flag in result.stdout


def test_emulator_help_has_its_own_flags() -> None:
    result = run_cli("emulator", "--help")
    assert result.returncode == 0
    assert "--flavor" in result.stdout and "--speed" in result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["serve"]),
        (["--read-only"], ["serve", "--read-only"]),
        (["--emulator", "--log-level", "debug"], ["serve", "--emulator", "--log-level", "debug"]),
        (["--version"], ["--version"]),
        (["--help"], ["--help"]),
        (["demo"], ["demo"]),
    ],
)
def test_no_command_means_serve(argv: list[str], expected: list[str]) -> None:
    assert normalize_argv(argv) == expected


def test_flags_parse_into_the_serve_command() -> None:
    args = build_parser("serve").parse_args(
        ["serve", "--transport", "http", "--allowed-host", "a.example", "--allowed-host", "b.example", "--stateless"]
    )
    assert args.transport == "http" and args.stateless
    assert args.allowed_host == ["a.example", "b.example"]
    assert args.read_only is None  # unset, so MOGPLEX_READ_ONLY decides


def test_a_bad_setting_is_a_clear_error_not_a_traceback() -> None:
    result = run_cli("serve", MOGPLEX_BASE_URL="ftp://example.com")
    assert result.returncode == 2
    assert "MOGPLEX_BASE_URL must be an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_reports_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["serve", "--base-url", "not a url"])
    assert code == 2
    assert "--base-url must be an http(s) URL" in capsys.readouterr().err


def test_a_public_url_that_is_not_an_https_origin_is_a_clear_error(tmp_path: Path) -> None:
    for flag in (["--public-url", "http://mcp.example.com"], []):
        env = {"MOGPLEX_MCP_STATE_DIR": str(tmp_path)}
        if not flag:
            env["MOGPLEX_MCP_PUBLIC_URL"] = "https://mcp.example.com/mcp"
        result = run_cli("serve", "--transport", "http", "--port", "0", *flag, **env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "--public-url must" in result.stderr


def test_stdio_startup_does_not_load_what_only_other_commands_need() -> None:
    probe = (
        "import sys; from mogplex_mcp import cli; cli.build_parser('serve');"
        "import mogplex_mcp.server.app;"
        "print(sorted(m for m in ('mogplex_mcp.emulator', 'mogplex_mcp.demo', 'mogplex_mcp.doctor',"
        " 'mogplex_mcp.server.transport.http', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("raw", "level", "says"),
    [
        (None, "problem", "is not set"),
        ("${user_config.token}", "problem", "unfilled placeholder"),
        ('"mog_abcDEF123456"', "problem", "quote"),
        ("Bearer mog_abcDEF123456", "problem", "Bearer"),
        ("ghp_notAMogplexToken", "warn", "not a Mogplex PAT"),
        ("mog_abcDEF123456\n", "warn", "whitespace"),
        ("mog_abcDEF123456", "ok", "is set: mog_…56"),
    ],
)
def test_doctor_token_checks_name_the_problem_without_the_token(raw: str | None, level: str, says: str) -> None:
    checks = token_checks(raw)
    assert checks[0].level == level
    assert says in checks[0].what
    for check in checks:
        assert "abcDEF1234" not in check.what + (check.fix or "")


def test_doctor_configs_use_a_placeholder_and_the_chosen_base_url() -> None:
    configs = host_configs("http://127.0.0.1:9999", "/opt/uv/uvx")
    for snippet in configs.values():
        assert "/opt/uv/uvx" in snippet
        assert "mog_YOUR_TOKEN" in snippet or "${input:mogplex-token}" in snippet
        assert "http://127.0.0.1:9999" in snippet
    assert "MOGPLEX_BASE_URL" not in host_configs(DEFAULT_BASE_URL, "uvx")["Codex (~/.codex/config.toml)"]


def test_doctor_reports_a_damaged_start_journal(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite3").write_bytes(b"not a database at all " * 64)
    result = run_cli(
        "doctor", "--no-network", MOGPLEX_MCP_STATE_DIR=str(tmp_path), MOGPLEX_TOKEN="mog_abcdefghijklmnop"
    )

    assert result.returncode == 1
    assert "PROBLEM  start journal" in result.stdout and "move the file aside" in result.stdout
