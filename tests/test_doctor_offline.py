"""`mogplex-mcp doctor` as users run it: what --no-network leaves out is said, and the journal check never
reports on a file a healing server is moving."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from mogplex_mcp.runs.local.journal_heal import side_lock
from tests.test_cli import run_cli

TOKEN = "mog_abcdefghijklmnop"  # a well-shaped, made-up token


def test_no_network_says_what_it_skipped_and_what_ready_then_means(tmp_path: Path) -> None:
    result = run_cli("doctor", "--no-network", MOGPLEX_MCP_STATE_DIR=str(tmp_path), MOGPLEX_TOKEN=TOKEN)

    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "Ready." not in lines, "a bare 'Ready.' claims the token and connection were checked"
    assert any(
        line.startswith("Ready (offline checks only: the token and the connection were not checked") for line in lines
    )
    skipped = [line for line in lines if line.strip().startswith("skipped")]
    assert skipped and "https://mogplex.com is reachable and accepts the token" in skipped[0]
    assert "without --no-network" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_the_journal_check_waits_for_a_healing_server_instead_of_reading_a_moved_file(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE_NAME
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    env = {"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "MOGPLEX_TOKEN": TOKEN}

    # A server replacing a damaged journal holds the side lock exclusively while it moves the file.
    with side_lock(path, exclusive=True, wait=1.0) as held:
        assert held
        during = run_cli("doctor", "--no-network", **env)
    after = run_cli("doctor", "--no-network", **env)

    assert "could not be checked: a server is repairing it right now" in during.stdout
    assert "passed SQLite's integrity check" not in during.stdout
    assert f"start journal {path} passed SQLite's integrity check" in after.stdout
