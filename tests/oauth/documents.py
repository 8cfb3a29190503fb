"""A client's metadata documents on a real HTTPS server on loopback (a self-signed certificate made with
`cryptography`), with the shapes an attacker would serve: a slow answer, a huge one, a redirect."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.oauth.support import REDIRECT_URI
from tests.redis_server import free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as files (the certificate doubles as its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@dataclass
class Documents:
    base: str
    ca_file: Path
    hits: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def document(url: str, **overrides: object) -> dict[str, object]:
    return {
        "client_id": url, "client_name": "Metadata Client", "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    } | overrides  # fmt: skip


@asynccontextmanager
async def https_documents(directory: Path) -> AsyncIterator[Documents]:
    cert, key = self_signed(directory)
    port = free_port()
    docs = Documents(f"https://127.0.0.1:{port}", cert)

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        docs.hits.append(name)
        url = docs.url(name)
        if name == "slow.json":
            await anyio.sleep(30)
        if name == "huge.json":
            return Response(json.dumps(document(url, client_name="x" * 2_000_000)), media_type="application/json")
        if name == "redirect.json":
            return RedirectResponse(docs.url("client.json"))
        if name == "impostor.json":
            return JSONResponse(document(docs.url("client.json")))  # names another URL as itself
        return JSONResponse(document(url))

    app = Starlette(routes=[Route("/{name}", serve)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="error",
        lifespan="off", timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = _Quiet(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers only a flag
                await anyio.sleep(0.01)
        try:
            yield docs
        finally:
            server.should_exit = True


class _Quiet(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
