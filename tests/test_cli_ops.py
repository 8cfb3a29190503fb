"""The probes-and-drain limits: each has a flag and an env var, a bad value is a clear error before serving."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from mogplex_mcp.cli import build_parser
from mogplex_mcp.cli_ops import OPS_LIMITS
from mogplex_mcp.runs.readiness import CHECK_TIMEOUT_SECONDS
from mogplex_mcp.server.transport.connections import PROBE_SLOTS
from mogplex_mcp.server.transport.drain import CLEANUP_RESERVE_SECONDS, FORCED_FLUSH_SECONDS
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_and_docs_state_the_defaults_the_server_uses() -> None:
    used = {
        "readiness_timeout_seconds": CHECK_TIMEOUT_SECONDS,
        "probe_slots": PROBE_SLOTS,
        "drain_flush_seconds": FORCED_FLUSH_SECONDS,
        "drain_cleanup_seconds": CLEANUP_RESERVE_SECONDS,
    }
    assert {dest: limit.default for dest, limit in OPS_LIMITS.items()} == used
    help_text = " ".join(run_cli("serve", "--help").stdout.split())
    docs = (ROOT / "docs" / "http.md").read_text(encoding="utf-8") + (ROOT / "README.md").read_text(encoding="utf-8")
    for limit in OPS_LIMITS.values():
        assert (
            f"{limit.flag} {limit.metavar}" in help_text and f"env {limit.env}; default: {limit.default:g}" in help_text
        )
        assert f"`{limit.flag} {limit.metavar}`" in docs, f"{limit.flag} is not in docs/http.md or README.md"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--probe-slots", "-1"], {}, "--probe-slots: expected a whole number 0..1000"),
        (["--readiness-timeout", "nan"], {}, "--readiness-timeout: expected a positive number of seconds"),
        ([], {"MOGPLEX_PROBE_SLOTS": "lots"}, "MOGPLEX_PROBE_SLOTS must be a whole number 0..1000"),
        ([], {"MOGPLEX_DRAIN_FLUSH_SECONDS": "0"}, "MOGPLEX_DRAIN_FLUSH_SECONDS must be a positive number"),
        (["--grace-period", "5", "--drain-cleanup-reserve", "5"], {}, "must be less than --grace-period"),
        (["--grace-period", "5"], {"MOGPLEX_DRAIN_CLEANUP_SECONDS": "9"}, "must be less than --grace-period"),
        (["--grace-period", "2", "--probe-slots", "many"], {}, "--probe-slots: expected a whole number"),
    ],
)
def test_a_bad_limit_is_a_clear_error_and_nothing_is_served(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    result = run_cli("serve", "--transport", "http", "--port", "0", *args, MOGPLEX_MCP_STATE_DIR=str(tmp_path), **env)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


def test_serve_help_describes_every_flag_and_states_defaults_one_way() -> None:
    """`serve --help`: defaults read "(env NAME; default: X)" or "(default: X)" at the end, never another way."""
    parser = build_parser("serve")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    for action in serve._actions:
        if not action.option_strings or action.dest == "help":
            continue
        text = " ".join((action.help or "").split()) % {"default": action.default}
        flag = action.option_strings[0]
        assert not re.search(r"default(?!: )", text.replace("(default)", "")), f"{flag}: {text}"
        assert not re.search(r"\(env [A-Z_]+(?:; (?!default: ))", text), f"{flag}: {text}"
        if "default" in text:
            assert re.search(r"\((?:env [A-Z_]+; )?default: [^()]+\)$", text), f"{flag}: default not last: {text}"
        described = re.sub(r"\((?:env [A-Z_]+; )?default: [^()]+\)$", "", text).strip()
        assert len(described) > 8, f"{flag} has no description beyond its default: {text!r}"
