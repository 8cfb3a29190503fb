"""The OAuth front door's command-line flags (`serve --transport http --public-url …`; docs/oauth.md).

Kept beside `cli.py` so the serve command gains one flag group and one call. Every limit of the front door
has a flag here, its default from `OAuthOptions`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from mogplex_mcp.config import clean_env_value

if TYPE_CHECKING:
    from mogplex_mcp.server.transport.oauth.limits import OAuthOptions

PUBLIC_URL_ENV = "MOGPLEX_MCP_PUBLIC_URL"
_DEFAULTS = {
    "access_token_minutes": 60.0,
    "grant_days": 30.0,
    "sign_ins_per_minute": 10,
    "sign_ins_per_minute_total": 120,
    "registrations_per_minute": 10,
    "registrations_per_minute_total": 100,
    "revocation_check_seconds": 5.0,
    "sign_in_minutes": 10.0,
    "code_seconds": 120.0,
    "pat_checks_in_flight": 8,
    "pat_check_seconds": 10.0,
    "metadata_fetch_seconds": 5.0,
    "metadata_max_bytes": 16 * 1024,
    "metadata_fetches_in_flight": 4,
    "metadata_fetches_per_minute": 60,
    "store_wait_seconds": 2.0,
}


Positive = Callable[[type[int] | type[float]], Callable[[str], float]]


def configure_oauth(group: argparse._ArgumentGroup, positive: Positive) -> None:
    group.add_argument(
        "--public-url",
        metavar="URL",
        help="turn on the OAuth front door: the https origin clients use, e.g. https://mcp.example.com; remote"
        f" connectors (claude.ai, ChatGPT) then sign in with a PAT once (env {PUBLIC_URL_ENV}; default: off)",
    )
    flags: tuple[tuple[str, str, type[int] | type[float], str], ...] = (
        ("access_token_minutes", "MINUTES", float, "life of an access token"),
        ("grant_days", "DAYS", float, "a grant ends after this long without a refresh"),
        ("sign_ins_per_minute", "N", int, "sign-in form submissions per address per minute"),
        ("sign_ins_per_minute_total", "N", int, "sign-in form submissions per minute in all"),
        ("registrations_per_minute", "N", int, "client registrations per address per minute"),
        ("registrations_per_minute_total", "N", int, "client registrations per minute in all"),
        ("revocation_check_seconds", "SECONDS", float, "re-check open sessions' grants this often"),
        ("sign_in_minutes", "MINUTES", float, "a sign-in link (the page's URL) expires after this long"),
        ("code_seconds", "SECONDS", float, "an authorization code expires after this long"),
        ("pat_checks_in_flight", "N", int, "sign-in PAT checks with Mogplex at once (more get 'busy, try again')"),
        ("pat_check_seconds", "SECONDS", float, "longest wait for Mogplex to answer one sign-in PAT check"),
        ("metadata_fetch_seconds", "SECONDS", float, "longest fetch of a client ID metadata document"),
        ("metadata_max_bytes", "BYTES", int, "largest client ID metadata document read"),
        ("metadata_fetches_in_flight", "N", int, "client ID metadata documents fetched at once (whole server)"),
        ("metadata_fetches_per_minute", "N", int, "client ID metadata documents fetched per minute (whole server)"),
        ("store_wait_seconds", "SECONDS", float, "longest wait for the SQLite grant store another process holds"),
    )
    for name, metavar, kind, text in flags:
        group.add_argument(
            "--oauth-" + name.replace("_", "-"),
            dest="oauth_" + name,
            type=positive(kind),
            default=_DEFAULTS[name],
            metavar=metavar,
            help=f"{text} (default: %(default)s)",
        )


def oauth_options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OAuthOptions | None:
    """`OAuthOptions` from the flags (the env var stands in for --public-url), or None: OAuth off."""
    values = os.environ if env is None else env
    public_url = args.public_url or clean_env_value(values.get(PUBLIC_URL_ENV))
    if not public_url:
        return None
    from mogplex_mcp.server.transport.oauth.limits import OAuthOptions

    return OAuthOptions(public_url=public_url, **{name: getattr(args, "oauth_" + name) for name in _DEFAULTS})
