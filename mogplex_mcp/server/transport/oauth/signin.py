"""The sign-in page: where the user hands this server their Mogplex PAT, once, for one client.

Self-contained HTML (no scripts, no external loads; its one stylesheet is inline and allowed by hash),
served with a strict CSP (`default-src 'none'`, `frame-ancestors 'none'`, `form-action` only this page and
the client's redirect), `X-Frame-Options: DENY`, `no-store`, `Referrer-Policy: same-origin`.
The form is CSRF-protected twice: a random cookie (SameSite=Strict, HttpOnly) whose HMAC with the sealed
request is a hidden field, and a refused foreign `Origin`. The page names the client and the host it will
be sent back to, so a user can spot a client that is not what it claims. The PAT is checked with Mogplex
(a read call) before a code is issued; a bad one gets a clear message on the page. Submissions are
rate-limited per address and overall, and only a few PAT checks run at once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import anyio
from mcp.server.auth.provider import construct_redirect_uri
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.store import StoreUnavailableError
from mogplex_mcp.server.transport.oauth.limits import RateLimiter
from mogplex_mcp.server.transport.oauth.provider import FrontDoorProvider, SignInRequest
from mogplex_mcp.server.transport.oauth.scopes import READ, WRITE
from mogplex_mcp.telemetry import hooks

CSRF_COOKIE = "mogplex_sign_in"
MAX_FORM_BYTES = 16 * 1024
MAX_PAT_CHARS = 1024
# Checks a PAT with Mogplex: None when it is accepted, else what to tell the user.
PatCheck = Callable[[str], Awaitable[str | None]]

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1b1f}"
    "h1{font-size:1.4rem}.who{background:#f3f3f7;border-radius:8px;padding:.75rem 1rem}"
    ".err{background:#fde8e8;color:#8a1c1c;border-radius:8px;padding:.75rem 1rem}"
    "label{display:block;margin:.6rem 0}"
    "input[type=password]{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}"
    "fieldset{border:1px solid #ccd;border-radius:8px;margin:1rem 0}button{font:inherit;padding:.5rem 1.2rem;"
    "margin-right:.5rem}small{color:#555}"
)
# What may go into the CSP header from a redirect URI: nothing that could end a directive or start another.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


class SignInPage:
    """GET renders the form for a sealed request; POST checks the PAT and redirects with a code."""

    def __init__(
        self, provider: FrontDoorProvider, check_pat: PatCheck, limiter: RateLimiter, *, secure_cookie: bool
    ) -> None:
        self.provider = provider
        self.check_pat = check_pat
        self.limiter = limiter
        self.secure_cookie = secure_cookie
        self._checks = anyio.Semaphore(provider.options.pat_checks_in_flight)

    async def get(self, request: Request) -> Response:
        sealed = request.query_params.get("request", "")
        found = self.provider.open_sign_in(sealed)
        if found is None:
            return _expired()
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self._form(found, sealed, cookie, problem=None, status=200)
        self._set_cookie(response, cookie)
        return response

    async def post(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        if not self.limiter.admit(address):
            return _page(
                "Too many sign-in attempts", "<p>Wait a minute, then start again from your assistant.</p>", 429
            )
        origin = request.headers.get("origin")
        if origin is not None and origin != self.provider.options.issuer:
            return _page("Sign-in refused", "<p>This form may only be sent from its own page.</p>", 403)
        form = await _small_form(request)
        if form is None:
            return _page("Sign-in refused", "<p>The form was too large.</p>", 413)
        sealed = form.get("request", "")
        found = self.provider.open_sign_in(sealed)
        if found is None:
            return _expired()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not self.provider.keys.verify(_csrf_message(cookie, sealed), form.get("csrf", "")):
            return _page(
                "Sign-in refused",
                "<p>This form was not sent from the page this server showed you (or it expired). "
                "Start again from your assistant.</p>",
                403,
            )
        if form.get("action") == "deny":
            hooks.recorder().oauth_sign_in("denied")
            return _back_to_client(found, error="access_denied")
        response = await self._sign_in(found, sealed, cookie, form)
        hooks.recorder().oauth_sign_in(_outcome(response))  # docs/operations.md
        return response

    async def _sign_in(self, found: SignInRequest, sealed: str, cookie: str, form: dict[str, str]) -> Response:
        pat = form.get("pat", "").strip()
        if not pat or len(pat) > MAX_PAT_CHARS or any(char.isspace() for char in pat):
            return self._form(found, sealed, cookie, "Paste your Mogplex personal access token (mog_…).", 400)
        if self._checks.value == 0:
            return self._form(found, sealed, cookie, "The server is busy checking other sign-ins: try again.", 503)
        async with self._checks:
            problem = await self.check_pat(pat)
        if problem is not None:
            return self._form(found, sealed, cookie, problem, 400)
        scopes = (READ, WRITE) if form.get("access") == "write" and WRITE in found.scopes else (READ,)
        try:
            code = await self.provider.issue_code(found, pat, token_fingerprint(pat), scopes)
        except StoreUnavailableError:
            return self._form(found, sealed, cookie, "The server cannot save sign-ins right now: try again.", 503)
        return _back_to_client(found, code=code)

    def _form(self, found: SignInRequest, sealed: str, cookie: str, problem: str | None, status: int) -> Response:
        csrf = self.provider.keys.sign(_csrf_message(cookie, sealed))
        return render_form(found, sealed, csrf, problem, status)

    def _set_cookie(self, response: Response, cookie: str) -> None:
        response.set_cookie(
            CSRF_COOKIE, cookie, max_age=3600, path="/oauth/", secure=self.secure_cookie, httponly=True,
            samesite="strict",
        )  # fmt: skip


def render_form(found: SignInRequest, sealed: str, csrf: str, problem: str | None, status: int) -> Response:
    name = html.escape(found.client_name or "An unnamed application")
    back_to = urlsplit(found.redirect_uri)
    host = html.escape(back_to.netloc or back_to.scheme + ":")
    write_offered = WRITE in found.scopes
    error = f'<p class="err" role="alert">{html.escape(problem)}</p>' if problem else ""
    write_choice = (
        '<label><input type="radio" name="access" value="write" checked> Start, continue and cancel runs '
        "<small>(and everything below)</small></label>"
        if write_offered
        else ""
    )
    read_checked = "" if write_offered else " checked"
    body = f"""
<p class="who"><strong>{name}</strong> wants to use Mogplex as you.<br>
<small>After you sign in you are sent back to <strong>{host}</strong>. If you did not just connect an
assistant to this server, close this page.</small></p>
{error}
<form method="post" action="/oauth/sign-in" autocomplete="off">
<input type="hidden" name="request" value="{html.escape(sealed)}">
<input type="hidden" name="csrf" value="{html.escape(csrf)}">
<label for="pat">Mogplex personal access token</label>
<input type="password" id="pat" name="pat" placeholder="mog_…" required maxlength="{MAX_PAT_CHARS}">
<small>Create one in Mogplex under Settings → API tokens. It is checked with Mogplex, then stored
encrypted on this server; the application never sees it.</small>
<fieldset><legend>What may {name} do?</legend>
{write_choice}
<label><input type="radio" name="access" value="read"{read_checked}> Only look at runs, their events and
results</label></fieldset>
<button type="submit" name="action" value="allow">Sign in</button>
<button type="submit" name="action" value="deny" formnovalidate>Cancel</button>
</form>"""
    return _page("Connect to Mogplex", body, status, form_target=found.redirect_uri)


def _page(title: str, body: str, status: int, *, form_target: str | None = None) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=page_headers(form_target))


def page_headers(form_target: str | None) -> dict[str, str]:
    """The page's security headers; `form_target` (the client's redirect) joins form-action, as browsers
    apply form-action to the redirect that follows a submission."""
    targets = "'self'"
    if form_target is not None:
        parts = urlsplit(form_target)
        scheme = parts.scheme if _SCHEME.fullmatch(parts.scheme) else ""
        if scheme and parts.netloc and _HOST.fullmatch(parts.netloc):
            targets += f" {scheme}://{parts.netloc}"
        elif scheme:  # an app's own scheme with an unusual host: the scheme alone (never raw text in the header)
            targets += f" {scheme}:"
    csp = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action {targets}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the form's POST.
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _expired() -> HTMLResponse:
    return _page(
        "This sign-in link is not valid",
        "<p>It expired or was changed. Start again from your assistant (connect or reconnect the server).</p>",
        400,
    )


def _back_to_client(found: SignInRequest, **params: str) -> Response:
    target = construct_redirect_uri(found.redirect_uri, state=found.state, **params)
    return RedirectResponse(
        target, status_code=303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _outcome(response: Response) -> str:
    """A finished sign-in for the metrics: back to the client with a code, a PAT refused, or the server failed."""
    if 300 <= response.status_code < 400:
        return "ok"
    return "invalid" if response.status_code == 400 else "failed"


def _csrf_message(cookie: str, sealed: str) -> bytes:
    return b"csrf\0" + cookie.encode() + b"\0" + hashlib.sha256(sealed.encode()).digest()


async def _small_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form, or None past MAX_FORM_BYTES (read no further)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}
