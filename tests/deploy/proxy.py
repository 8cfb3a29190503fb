"""The deployment of docs/scale.md ("Behind nginx"), run for real on loopback.

- `replica_commands()` reads the replicas' command lines from docs/scale.md itself, and `nginx_config()` renders
  deploy/nginx/mogplex-mcp.conf itself: only ports and certificate paths are swapped, and each swap must match
  exactly once, so the doc, the file and this test cannot drift apart silently.
- A throwaway self-signed certificate (`cryptography`) for mcp.example.com and 127.0.0.1.
- `Replica`: one `serve` child process on a fixed port, restartable (SIGTERM, wait, start again on that port).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio
import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.provision import missing
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
SCALE_DOC = REPO / "docs" / "scale.md"
NGINX_CONF = REPO / "deploy" / "nginx" / "mogplex-mcp.conf"
PUBLIC_NAME = "mcp.example.com"
DOC_PORTS = (8001, 8002, 8003)
NGINX_INSTALL = "sudo apt-get install -y nginx"
READY_LIMIT = 40.0


def replica_commands() -> list[tuple[dict[str, str], list[str]]]:
    """The `MOGPLEX_MCP_STATE_DIR=… mogplex-mcp serve …` lines of docs/scale.md's nginx section: (env, argv)."""
    text = SCALE_DOC.read_text(encoding="utf-8")
    section = text[text.index("## Behind nginx (tested)") :]
    section = section[: section.index("\n## ", 1)]
    first_block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert first_block is not None, "docs/scale.md lost its replica commands"
    commands = []
    for line in first_block.group(1).splitlines():
        words = shlex.split(line.strip().rstrip("&"))
        if "serve" not in words:
            continue
        env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
        argv = [word for word in words if not re.match(r"^[A-Z_]+=", word)]
        assert argv[0] == "mogplex-mcp", line
        commands.append((env, argv[1:]))
    assert [int(argv[argv.index("--port") + 1]) for _, argv in commands] == list(DOC_PORTS)
    return commands


def with_port(argv: list[str], port: int) -> list[str]:
    swapped = list(argv)
    swapped[swapped.index("--port") + 1] = str(port)
    return swapped


def nginx_executable() -> str:
    """Debian's nginx lives in /usr/sbin, which a non-root PATH often lacks."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        missing("`nginx`", NGINX_INSTALL)
    return found


def _swap(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/nginx/mogplex-mcp.conf should contain {old!r} exactly once"
    return text.replace(old, new)


def nginx_config(workdir: Path, listen: int, replica_ports: list[int], cert: Path, key: Path) -> Path:
    """deploy/nginx/mogplex-mcp.conf with the test's ports and certificate, inside a minimal main config (what
    Debian's /etc/nginx/nginx.conf is for an operator: pid, logs, temp paths, `include conf.d/*`)."""
    site = NGINX_CONF.read_text(encoding="utf-8")
    site = _swap(site, "listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;")
    for doc_port, port in zip(DOC_PORTS, replica_ports, strict=True):
        site = _swap(site, f"127.0.0.1:{doc_port} ", f"127.0.0.1:{port} ")
    site = _swap(site, "/etc/ssl/certs/mcp.example.com.pem", str(cert))
    site = _swap(site, "/etc/ssl/private/mcp.example.com.key", str(key))
    (workdir / "conf.d").mkdir(exist_ok=True)
    (workdir / "conf.d" / "mogplex-mcp.conf").write_text(site, encoding="utf-8")
    temp = "".join(
        f"    {kind}_temp_path {workdir}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private directory
    main = (
        f"{user}worker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log info;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n    access_log {workdir}/access.log;\n{temp}    include {workdir}/conf.d/*.conf;\n}}\n"
    )
    path = workdir / "nginx.conf"
    path.write_text(main, encoding="utf-8")
    return path


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throwaway certificate for mcp.example.com and 127.0.0.1 (valid one day); (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PUBLIC_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName(PUBLIC_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@contextmanager
def running_nginx(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground on the rendered config; stopped by its PID (SIGQUIT: graceful, then SIGKILL)."""
    nginx = nginx_executable()
    prefix = str(config.parent)
    check = subprocess.run(
        [nginx, "-t", "-p", prefix, "-e", f"{prefix}/error.log", "-c", str(config)], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr.decode()
    process = subprocess.Popen(
        [nginx, "-p", prefix, "-e", f"{prefix}/error.log", "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Replica:
    """One `mogplex-mcp serve` of the doc, on a fixed port; `restart()` as the doc's rolling restart does."""

    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)
    _log: IO[bytes] | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - the child outlives this call; its log is a file
            [sys.executable, "-m", "mogplex_mcp", *self.argv], env=self.env, stdout=self._log, stderr=self._log
        )
        await self.until_ready()

    async def until_ready(self) -> None:
        """`until curl -fsS http://127.0.0.1:PORT/readyz` of the doc."""
        with anyio.fail_after(READY_LIMIT):
            async with httpx2.AsyncClient(timeout=2) as http:
                while True:
                    assert self.process is not None and self.process.poll() is None, self.log[-3000:]
                    try:
                        if (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                            return
                    except httpx2.TransportError:
                        pass
                    await anyio.sleep(0.1)

    async def stop(self, limit: float = 40.0) -> int:
        """SIGTERM, then wait for the exit (the drain); its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(limit):
            while self.process.poll() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
                await anyio.sleep(0.05)
        code = self.process.returncode
        self.exit_codes.append(code)
        if self._log is not None:
            self._log.close()
        return code

    async def restart(self) -> int:
        code = await self.stop()
        await self.start()
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Deployment:
    url: str  # https://127.0.0.1:PORT/mcp, reached with Host: mcp.example.com
    replicas: list[Replica]
    tls: ssl.SSLContext
    workdir: Path

    @property
    def access_log(self) -> str:
        return (self.workdir / "access.log").read_text(encoding="utf-8", errors="replace")


@asynccontextmanager
async def deployment(workdir: Path, base_env: dict[str, str], redis_url: str) -> AsyncIterator[Deployment]:
    """Three replicas as docs/scale.md starts them (their env plus `base_env`), and nginx with the deploy file."""
    nginx_executable()
    cert, key = self_signed(workdir)
    ports = [free_port() for _ in DOC_PORTS]
    listen = free_port()
    replicas: list[Replica] = []
    async with AsyncExitStack() as stack:
        for n, ((doc_env, argv), port) in enumerate(zip(replica_commands(), ports, strict=True)):
            state = workdir / f"replica-{n + 1}"
            env = {**base_env, **doc_env, "MOGPLEX_MCP_STATE_DIR": str(state), "MOGPLEX_REDIS_URL": redis_url}
            replica = Replica(with_port(argv, port), env, port, workdir / f"replica-{n + 1}.log")
            stack.callback(replica.kill)
            replicas.append(replica)
        async with anyio.create_task_group() as tg:  # start them side by side: each takes a couple of seconds
            for replica in replicas:
                tg.start_soon(replica.start)
        stack.enter_context(running_nginx(nginx_config(workdir, listen, ports, cert, key)))
        tls = ssl.create_default_context(cafile=str(cert))
        await _until_proxy_answers(listen, tls)
        yield Deployment(f"https://127.0.0.1:{listen}/mcp", replicas, tls, workdir)


async def _until_proxy_answers(port: int, tls: ssl.SSLContext) -> None:
    with anyio.fail_after(20):
        async with httpx2.AsyncClient(verify=tls, timeout=2) as http:
            while True:
                try:
                    await http.get(f"https://127.0.0.1:{port}/")
                    return
                except httpx2.TransportError:
                    await anyio.sleep(0.1)
