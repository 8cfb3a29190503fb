"""The pinned Node clients, installed once per test session from the lock when Node and npm are present."""

from __future__ import annotations

import fcntl
import shutil
import subprocess

import pytest

from tests.interop.servers import REPO_ROOT
from tests.interop.support import INTEROP, clients_installed
from tests.provision import missing

INSTALL = "bash .ci/install-interop"
INSTALL_LIMIT_SECONDS = 600


@pytest.fixture(scope="session")
def node_clients() -> None:
    """MCP Inspector and the TypeScript SDK in tests/interop/node_modules: installed here if missing.

    The same script `.ci/run` uses, under a file lock, so parallel test processes install once. Without
    Node.js (or npm) the tests skip with that reason (under CI=true they fail: CI installs Node).
    """
    if shutil.which("node") is None or shutil.which("npm") is None or shutil.which("npx") is None:
        missing("Node.js and npm (the interop tests drive real Node MCP clients)", INSTALL)
    with (INTEROP / ".install-interop.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not clients_installed():
            _install()


def _install() -> None:
    try:
        done = subprocess.run(
            ["bash", str(REPO_ROOT / ".ci" / "install-interop")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=INSTALL_LIMIT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        missing(f"the pinned interop clients (`{INSTALL}` took over {INSTALL_LIMIT_SECONDS} s)", INSTALL)
    if done.returncode != 0 or not clients_installed():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        missing(f"the pinned interop clients (`{INSTALL}` failed with exit code {done.returncode}: {tail})", INSTALL)
