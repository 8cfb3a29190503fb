"""`mogplex-mcp oauth grants list|revoke`: the operator's view of the OAuth front door's grants (docs/oauth.md).

It reads the same store as `serve`: the state dir's `oauth-grants.sqlite3`, or Redis with `--redis-url` /
`MOGPLEX_REDIS_URL`; and the same key (`MOGPLEX_MCP_OAUTH_KEY`, else the state dir's `oauth-key`, never created
here) to say which key each grant's PAT is sealed with — what to check before retiring an old key. It shows a
grant's user by the PAT's fingerprint only, never the PAT. Client names are the clients' own words: shown
cleaned of control characters (a name must not drive the operator's terminal).

Revoking drops the grant from the store: the server that holds a session of it ends that session and its
streams within `--oauth-revocation-check-seconds`, and the client's next request gets the sign-in challenge.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import anyio

from mogplex_mcp.config import ConfigError, Settings
from mogplex_mcp.runs.grant_store import Grant, GrantStore
from mogplex_mcp.runs.local.grants import FILE_NAME
from mogplex_mcp.runs.store import StoreUnavailableError

_NAME_CHARS = 40


def configure_grants(commands: Any) -> None:
    """Add `oauth grants list` and `oauth grants revoke` to the top-level subcommands."""
    oauth = commands.add_parser("oauth", help="operate the OAuth front door (see docs/oauth.md)")
    grants = oauth.add_subparsers(dest="oauth_command", metavar="COMMAND", required=True).add_parser(
        "grants", help="list or revoke the grants signed-in clients hold"
    )
    actions = grants.add_subparsers(dest="grants_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every live grant: client, redirect host, scope, user, times, key")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    revoking = actions.add_parser("revoke", help="revoke grants: their open sessions end, their clients sign in again")
    revoking.add_argument("grant_ids", nargs="*", default=[], metavar="GRANT_ID", help="grant ids (from `list`)")
    revoking.add_argument("--client", metavar="CLIENT_ID", help="every grant of this client id")
    revoking.add_argument("--all", action="store_true", help="every grant")
    revoking.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for parser in (listing, revoking):
        parser.add_argument(
            "--redis-url", metavar="URL", help="the Redis the servers share (env MOGPLEX_REDIS_URL), as for serve"
        )
    listing.set_defaults(handler=run_list)
    revoking.set_defaults(handler=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env(redis_url=args.redis_url)
    grants = _with_store(settings, _all_grants)
    keys = _keys(settings)
    rows = [_row(grant, keys) for grant in sorted(grants, key=lambda g: (g.created_at or 0, g.grant_id))]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"No live grants in {_where(settings)}.")
    else:
        _print_table(rows)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    settings = Settings.from_env(redis_url=args.redis_url)
    if sum((bool(args.grant_ids), bool(args.client), bool(args.all))) != 1:
        raise ConfigError("name the grants to revoke one way: GRANT_ID..., --client CLIENT_ID or --all")
    grants = _with_store(settings, _all_grants)
    if args.all:
        chosen = grants
    elif args.client:
        chosen = [grant for grant in grants if grant.client_id == args.client]
    else:
        wanted = set(args.grant_ids)
        chosen = [grant for grant in grants if grant.grant_id in wanted]
        if missing := wanted - {grant.grant_id for grant in chosen}:
            print(f"mogplex-mcp: no live grant {', '.join(sorted(missing))} in {_where(settings)}", file=sys.stderr)
            return 1
    if not chosen:
        print(f"No live grants to revoke in {_where(settings)}.")
        return 1 if args.client else 0
    if not args.yes and not _confirmed(chosen, settings):
        print("Nothing revoked.", file=sys.stderr)
        return 1
    dropped = _with_store(settings, lambda store: _drop(store, [grant.grant_id for grant in chosen]))
    print(
        f"Revoked {dropped} grant(s). Servers end their open sessions within --oauth-revocation-check-seconds "
        "(default 5 s); those clients must sign in again."
    )
    return 0


async def _all_grants(store: GrantStore) -> list[Grant]:
    return [grant async for grant in store.grants()]


async def _drop(store: GrantStore, grant_ids: list[str]) -> int:
    return sum([await store.drop_grant(grant_id) for grant_id in grant_ids])


def _with_store(settings: Settings, work: Callable[[GrantStore], Awaitable[Any]]) -> Any:
    """Run `work` against the configured store (Redis, else the state dir's file), then close it."""

    async def run() -> Any:
        if settings.redis_url:
            from mogplex_mcp.runs import redis as shared
            from mogplex_mcp.runs.backends import redis_limits
            from mogplex_mcp.runs.redis.grants import RedisGrantStore

            connection = shared.connect(settings.redis_url, limits=redis_limits(settings))  # as serve does
            try:
                return await work(RedisGrantStore(connection))
            finally:
                await connection.aclose()
        from mogplex_mcp.runs.local.grants import LocalGrantStore

        if not (settings.state_dir / FILE_NAME).exists():  # nothing was ever signed in here: create nothing
            return await work(_NoGrants())  # type: ignore[arg-type]
        local = LocalGrantStore.in_state_dir(settings.state_dir)
        try:
            return await work(local)
        finally:
            local.close()

    if settings.redis_url:
        from mogplex_mcp.runs.backends import shared_store_problem

        if problem := shared_store_problem(settings):  # the redis extra missing, or Redis not answering
            raise ConfigError(problem)
    try:
        return anyio.run(run)
    except StoreUnavailableError as exc:
        raise ConfigError(f"{exc}") from None


class _NoGrants:
    """The store of a state dir where no one ever signed in."""

    async def grants(self) -> AsyncIterator[Grant]:
        none: tuple[Grant, ...] = ()
        for grant in none:
            yield grant

    async def drop_grant(self, grant_id: str) -> bool:
        return False


def _where(settings: Settings) -> str:
    from mogplex_mcp.config import mask_redis_url

    return f"Redis {mask_redis_url(settings.redis_url)}" if settings.redis_url else str(settings.state_dir / FILE_NAME)


def _keys(settings: Settings) -> Any:
    from mogplex_mcp.server.transport.oauth.keys import existing_keys

    return existing_keys(settings.state_dir, shared=bool(settings.redis_url))


def _row(grant: Grant, keys: Any) -> dict[str, Any]:
    name, redirect = grant.client_name, grant.redirect_uri
    if keys is not None and (name is None or redirect is None):  # granted before these were recorded
        from mogplex_mcp.server.transport.oauth.clients import RegisteredClients

        registered = RegisteredClients(keys).get(grant.client_id)
        if registered is not None:
            name = name or registered.client_name
            uris = registered.redirect_uris or []
            redirect = redirect or (str(uris[0]) if len(uris) == 1 else None)
    if name is None and grant.client_id.startswith("https://"):
        name = grant.client_id  # a client ID metadata document: its URL names it
    return {
        "grant_id": grant.grant_id,
        "client_id": grant.client_id,
        "client_name": _clean(name) if name else None,
        "redirect_host": _host(redirect),
        "redirect_uri": _clean(redirect) if redirect else None,
        "scopes": list(grant.scopes),
        "pat_fingerprint": grant.fingerprint,
        "created_at": _time(grant.created_at),
        "last_refresh": _time(grant.refreshed_at),
        "expires_at": _time(grant.expires_at),
        "key": _key_state(grant, keys),
    }


def _key_state(grant: Grant, keys: Any) -> str:
    if keys is None:
        return "unknown (no key here: set MOGPLEX_MCP_OAUTH_KEY)"
    index: int | None = keys.opening_key(grant.sealed_pat, grant.grant_id.encode())
    if index is None:
        return "none (unreadable: dropped at its next use)"
    return "current" if index == 0 else f"old #{index} (still opens; re-sealed only by signing in again)"


def _host(uri: str | None) -> str | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return _clean(parts.netloc)
    return _clean(f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:")  # an app's own scheme


def _clean(text: str) -> str:
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)
    return kept if len(kept) <= _NAME_CHARS * 3 else kept[: _NAME_CHARS * 3 - 1] + "…"


def _time(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None


_COLUMNS = (
    ("GRANT", "grant_id"),
    ("CLIENT", "client_name"),
    ("REDIRECT HOST", "redirect_host"),
    ("SCOPE", "scopes"),
    ("USER (PAT FP)", "pat_fingerprint"),
    ("CREATED", "created_at"),
    ("LAST REFRESH", "last_refresh"),
    ("EXPIRES", "expires_at"),
    ("KEY", "key"),
)


def _print_table(rows: list[dict[str, Any]]) -> None:
    def cell(row: dict[str, Any], field: str) -> str:
        value = row[field]
        if field == "scopes":
            return " ".join(value)
        if field == "client_name" and value:
            name = str(value)
            return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"
        if field == "pat_fingerprint":
            return str(value)[:12]
        if field == "key":
            return str(value).split(" ", 1)[0]
        return "-" if value is None else str(value)

    table = [[title for title, _ in _COLUMNS]] + [[cell(row, field) for _, field in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    for line in table:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())
    print(f"\n{len(rows)} grant(s). Revoke with `mogplex-mcp oauth grants revoke GRANT_ID` (see --help).")


def _confirmed(chosen: list[Grant], settings: Settings) -> bool:
    print(f"About to revoke {len(chosen)} grant(s) in {_where(settings)}:", file=sys.stderr)
    for grant in chosen[:20]:
        row = _row(grant, None)
        shown = row["client_name"] or row["client_id"][:_NAME_CHARS]
        print(f"  {grant.grant_id}  {shown}  {row['redirect_host'] or '-'}", file=sys.stderr)
    if len(chosen) > 20:
        print(f"  … and {len(chosen) - 20} more", file=sys.stderr)
    print("Their clients must sign in again. Revoke? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
