"""The OAuth rig: the real server with its front door on (`--public-url`), served on loopback, the emulator behind
it, the Python SDK's OAuth client, and a real headless Chromium filling the sign-in page.

The server is configured as a public bind (bearer or sign-in required), its public URL the loopback origin it is
served on. The client's redirect URI is a loopback URL the browser really navigates to after the page's 303;
Playwright answers that one navigation (there is no app behind it) and hands the code to the SDK client.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from playwright.async_api import Browser, Page, Route
from starlette.applications import Starlette

from mogplex_mcp.cli import build_parser
from mogplex_mcp.cli_oauth import oauth_options
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.server.state import AppState
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app, running_http
from mogplex_mcp.server.transport.oauth import FrontDoor, OAuthOptions
from tests.e2e.support import Mode, emulator_config
from tests.redis_server import free_port
from tests.server.harness import FAST_FOLLOW, settings_for
from tests.server.resources.test_run_resources import Inbox

NOT_LIMITS = {"public_url", "allow_loopback_metadata", "metadata_ca_file"}  # settings, or for tests only
CALLBACK_PORT = free_port()
REDIRECT_URI = f"http://127.0.0.1:{CALLBACK_PORT}/callback"
SIGN_IN_LIMIT = 10.0


@dataclass
class OAuthServer:
    url: str
    issuer: str
    emu: EmulatorHandle
    app: Starlette
    states: list[AppState] = field(default_factory=list)

    @property
    def front_door(self) -> FrontDoor:
        door: FrontDoor = self.app.state.front_door
        return door


def options_from_cli(*flags: str) -> dict[str, Any]:
    """The `OAuthOptions` fields `serve --public-url … <flags>` sets (all of them), as `oauth_server` takes them."""
    args = build_parser("serve").parse_args(["serve", "--public-url", "https://mcp.example.com", *flags])
    options = oauth_options(args, env={})
    assert options is not None
    return {name: value for name, value in dataclasses.asdict(options).items() if name not in NOT_LIMITS}


def public_options(port: int, **oauth: Any) -> HttpOptions:
    oauth_options = OAuthOptions(public_url=f"http://127.0.0.1:{port}", **oauth)
    return HttpOptions(host="0.0.0.0", allowed_hosts=("127.0.0.1",), oauth=oauth_options)  # noqa: S104 - never bound


@asynccontextmanager
async def oauth_server(
    tmp_path: Path,
    *,
    emulator: EmulatorConfig | None = None,
    emu: EmulatorHandle | None = None,
    port: int | None = None,
    public_port: int | None = None,
    settings: dict[str, Any] | None = None,
    **oauth: Any,
) -> AsyncIterator[OAuthServer]:
    """The server with OAuth on, in front of the emulator (a fresh one unless `emu` is given).

    `public_port`: the port of the public URL when it is not the one served (replicas behind one address).
    """
    if emu is None:
        async with (
            running_emulator(emulator or emulator_config()) as fresh,
            oauth_server(tmp_path, emu=fresh, port=port, settings=settings, **oauth) as served,
        ):
            yield served
        return
    the_port = port or free_port()
    options = public_options(public_port or the_port, **oauth)
    states: list[AppState] = []
    values = {"token": None} | (settings or {})
    state_dir = values.pop("state_dir", tmp_path / "state")
    app = build_http_app(settings_for(emu, state_dir, **values), options, follow=FAST_FOLLOW, on_state=states.append)
    async with running_http(app, host="127.0.0.1", port=the_port, options=options) as url:
        yield OAuthServer(url, url.removesuffix("/mcp"), emu, app, states)


class MemoryStorage:
    """The SDK client's token storage, in memory (what a host keeps in its keychain)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class BrowserSignIn:
    """The user: opens the authorization URL in Chromium, pastes the PAT, picks the access, submits."""

    def __init__(self, page: Page, pat: str, access: str = "write") -> None:
        self.page, self.pat, self.access = page, pat, access
        self.visits = 0
        self.landed: list[str] = []
        self.page_html: list[str] = []
        self._arrived = anyio.Event()

    async def _land(self, route: Route) -> None:
        self.landed.append(route.request.url)
        self._arrived.set()
        await route.fulfill(status=200, content_type="text/html", body="<p>You may close this window.</p>")

    async def redirect_handler(self, url: str) -> None:
        self.visits += 1
        self._arrived = anyio.Event()
        await self.page.route(f"http://127.0.0.1:{CALLBACK_PORT}/**", self._land)
        await self.page.goto(url)
        self.page_html.append(await self.page.content())
        if await self.page.locator("#pat").count() == 0:
            raise AssertionError(f"no sign-in form at {self.page.url}: {self.page_html[-1][:2000]}")
        await self.page.fill("#pat", self.pat)
        await self.page.check(f"input[name=access][value={self.access}]")
        await self.page.click("button[value=allow]")

    async def callback_handler(self) -> AuthorizationCodeResult:
        with anyio.move_on_after(SIGN_IN_LIMIT):
            await self._arrived.wait()
        if not self.landed:
            raise AssertionError(
                f"the browser never reached the client: at {self.page.url}: {await self.page.content()}"
            )
        query = parse_qs(urlsplit(self.landed[-1]).query)
        if "code" not in query:
            raise AssertionError(
                f"the sign-in did not end with a code: {self.landed[-1]} / {await self.page.content()}"
            )
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0])


def client_metadata(name: str = "Test Assistant", auth_method: str = "none") -> OAuthClientMetadata:
    return OAuthClientMetadata(
        redirect_uris=[REDIRECT_URI],
        client_name=name,
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method=auth_method,
    )


def oauth_provider(
    url: str, sign_in: BrowserSignIn, storage: MemoryStorage, *, metadata_url: str | None = None, **meta: Any
) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=url,
        client_metadata=client_metadata(**meta),
        storage=storage,
        redirect_handler=sign_in.redirect_handler,
        callback_handler=sign_in.callback_handler,
        client_metadata_url=metadata_url,
    )


@asynccontextmanager
async def oauth_client(
    url: str, auth: OAuthClientProvider, *, mode: Mode = "legacy", inbox: Inbox | None = None
) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=90.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, message_handler=inbox) as connected,
    ):
        yield connected


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport={"width": 720, "height": 760})
    return await context.new_page()


# --- a raw client: the same flow as the SDK client and the browser, one request at a time --------------------

PKCE_VERIFIER = "v" * 64
PKCE_CHALLENGE = "w1TpKUdYE9hUAcNSeeSRFioHDxfUxuHho_JHAfZ_vDM"  # S256 of PKCE_VERIFIER, base64url


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the sign-in form."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    return {name: html.unescape(value) for name, value in fields.items()}


class RawFlow:
    """Registration, /authorize, the sign-in form and /token over plain HTTP (cookies kept, redirects not)."""

    def __init__(self, server: OAuthServer, http: httpx2.AsyncClient) -> None:
        self.server, self.http = server, http
        self.client_id = ""

    async def register(self, redirect_uri: str = REDIRECT_URI, name: str = "Raw Client") -> httpx2.Response:
        body = {"redirect_uris": [redirect_uri], "client_name": name, "token_endpoint_auth_method": "none"}
        response = await self.http.post(f"{self.server.issuer}/register", json=body)
        if response.status_code == 201:
            self.client_id = response.json()["client_id"]
        return response

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        params: dict[str, str | None] = {
            "response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": PKCE_CHALLENGE, "code_challenge_method": "S256", "state": "st4te",
            "resource": self.server.url,
        }  # fmt: skip
        params.update(overrides)
        return {name: value for name, value in params.items() if value is not None}

    async def authorize(self, **overrides: str | None) -> httpx2.Response:
        return await self.http.get(f"{self.server.issuer}/authorize", params=self.authorize_params(**overrides))

    async def sign_in_page(self, **overrides: str | None) -> tuple[str, httpx2.Response]:
        """Follow /authorize to the sign-in page: (its URL, the page)."""
        authorized = await self.authorize(**overrides)
        assert authorized.status_code == 302, authorized.text
        location = authorized.headers["location"]
        assert location.startswith(f"{self.server.issuer}/oauth/sign-in?"), location
        return location, await self.http.get(location)

    async def submit(self, page: httpx2.Response, pat: str, **extra: str) -> httpx2.Response:
        fields = form_fields(page.text) | {"pat": pat, "access": "write", "action": "allow"} | extra
        return await self.http.post(
            f"{self.server.issuer}/oauth/sign-in", data=fields, headers={"Origin": self.server.issuer}
        )

    async def code(self, pat: str) -> str:
        _, page = await self.sign_in_page()
        done = await self.submit(page, pat)
        assert done.status_code == 303, done.text
        query = parse_qs(urlsplit(done.headers["location"]).query)
        return query["code"][0]

    async def exchange(self, code: str, verifier: str = PKCE_VERIFIER) -> httpx2.Response:
        data = {
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": self.client_id, "code_verifier": verifier, "resource": self.server.url,
        }  # fmt: skip
        return await self.http.post(f"{self.server.issuer}/token", data=data)

    async def refresh(self, refresh_token: str) -> httpx2.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id}
        return await self.http.post(f"{self.server.issuer}/token", data=data)

    async def tokens(self, pat: str) -> dict[str, Any]:
        await self.register()
        exchanged = await self.exchange(await self.code(pat))
        assert exchanged.status_code == 200, exchanged.text
        tokens: dict[str, Any] = exchanged.json()
        return tokens
