"""A real `redis-server` for tests: started on a free loopback port, no persistence, stopped by its PID.

Off CI a machine without it skips the Redis tests loudly (`tests/provision.py`); `.ci/run` installs it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.provision import require_executable

INSTALL = "sudo apt-get install -y redis-server"
_READY_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class RedisServer:
    """A running server: its URL and process (tests that restart Redis use `pid` and `port`)."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(16)
            return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")
    except OSError:
        return False


def start_redis(port: int | None = None, extra: tuple[str, ...] = ()) -> RedisServer:
    """Start `redis-server` in the foreground of a child process; wait until it answers PING.

    `extra`: more command-line options (e.g. `--requirepass`, `--maxmemory`). With `--requirepass`, PING
    answers an error rather than PONG, so readiness then means "answers at all".
    """
    executable = require_executable("redis-server", INSTALL)
    the_port = port or free_port()
    # Its files (an AOF when a test turns it on) go to a directory of its port, never the current one: a restart
    # on the same port finds them again, and the repository stays clean.
    data_dir = Path(tempfile.gettempdir()) / f"mogplex-test-redis-{the_port}"
    data_dir.mkdir(exist_ok=True)
    args = [executable, "--port", str(the_port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", ""]
    args += ["--appendonly", "no", *extra]
    # Its log goes to a file, not a pipe nobody reads (a full pipe would block the server).
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([*args, "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while not _answers_ping(the_port):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_redis(process)
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"redis-server did not start on port {the_port}: {output[-500:]}")
            time.sleep(0.05)
    return RedisServer(process=process, port=the_port)


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_redis(port: int | None = None, extra: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    server = start_redis(port, extra)
    try:
        yield server
    finally:
        stop_redis(server.process)
