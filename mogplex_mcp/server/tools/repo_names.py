"""A repository *name* passed where start_run wants its id: refused, with the id it names when one read finds it.

Models often pass `web` or `acme/web` as repoId. The API takes only the id (a UUID), and guessing which
repository a name means could start a run on the wrong one, so a name never starts a run. What the model
needs to recover is the id, so one bounded, read-only `GET /repos?q=<name>` looks it up and the refusal
names the matching id(s). Anything else that is not a UUID is refused without any upstream call.
"""

from __future__ import annotations

import re
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from mogplex_mcp.api.models import Repo
from mogplex_mcp.runs.sanitize import clean_text
from mogplex_mcp.server.state import AppState, require_token, upstream

# GitHub's rules, loosely: an owner is letters, digits and single hyphens (≤ 39); a name adds '.' and '_' (≤ 100).
_NAME = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,38}/)?[A-Za-z0-9._-]{1,100}")
# Hex and hyphens this long is a mistyped id, not a name: looking it up would only waste a request.
_ID_ATTEMPT = re.compile(r"[0-9A-Fa-f-]{30,}")
LOOKUP_LIMIT = 20  # one small page: enough for any exact match unless the name is a very common substring
SHOWN_MAX = 5  # candidates named in one error, so it stays short
_NOT_STARTED = "No run was started (only a read-only repository lookup was sent to Mogplex)."


def looks_like_name(given: str) -> bool:
    """`name` or `owner/name` with safe characters and bounded length (and not a mangled UUID)."""
    text = given.strip()
    if not _NAME.fullmatch(text) or _ID_ATTEMPT.fullmatch(text):
        return False
    return text.rsplit("/", 1)[-1] not in (".", "..")


def not_an_id_error(given: str) -> ToolError:
    """The refusal for a repoId that is neither an id nor a name: nothing is looked up or sent."""
    shown = clean_text(given)[:100]
    short = clean_text(given.strip().rsplit("/", 1)[-1])[:100] or shown
    return ToolError(
        f"invalid arguments: repoId {shown!r} is not a repository id (ids are UUIDs). If it is a repository name, "
        f"call list_repos with query {short!r} and pass the id it shows as repoId. Nothing was sent to Mogplex."
    )


async def name_error(ctx: Context[Any, Any], state: AppState, given: str) -> ToolError:
    """The refusal for a repository name, naming the id(s) one read-only lookup found (or why it found none)."""
    name = given.strip()
    try:
        token = require_token(ctx, state)
    except ToolError:  # no token: the lookup cannot be made, and the start could not either
        return not_an_id_error(given)
    try:
        async with (
            upstream("look up the repository by name", token, state.budget) as deadline,
            state.client(token) as api,
        ):
            repos = await api.list_repos(query=name, limit=LOOKUP_LIMIT, deadline=deadline)
    except ToolError as exc:
        return ToolError(
            f"invalid arguments: repoId {name!r} is not a repository id (ids are UUIDs), and looking the name up "
            f"failed: {exc} Call list_repos with query {name!r} and pass the id it shows as repoId. {_NOT_STARTED}"
        )
    return ToolError(_describe(name, repos[:LOOKUP_LIMIT]))


def _same_name(name: str, repo: Repo) -> bool:
    """`acme/web` names one full name; `web` names every owner's repository called web (any case)."""
    full = repo.full_name.casefold()
    wanted = name.casefold()
    return full == wanted if "/" in wanted else full.rsplit("/", 1)[-1] == wanted


def _listed(repos: list[Repo]) -> str:
    shown = ", ".join(f"{clean_text(r.full_name)[:140]} (id {clean_text(r.id)[:64]})" for r in repos[:SHOWN_MAX])
    return shown + (f" and {len(repos) - SHOWN_MAX} more" if len(repos) > SHOWN_MAX else "")


def _describe(name: str, repos: list[Repo]) -> str:
    exact = [repo for repo in repos if _same_name(name, repo)]
    head = f"invalid arguments: repoId {name!r} is a repository name, not its id (ids are UUIDs)"
    not_id = f"invalid arguments: repoId {name!r} is not a repository id (ids are UUIDs)"
    if len(exact) == 1:
        repo_id = clean_text(exact[0].id)[:64]
        full = clean_text(exact[0].full_name)[:140]
        return f"{head}; its id is {repo_id} ({full}) — call start_run with repoId: {repo_id}. {_NOT_STARTED}"
    if exact:
        return (
            f"{head}, and {len(exact)} repositories have that name: {_listed(exact)}. Ask which one is meant if "
            f"unsure, then call start_run with its id as repoId. {_NOT_STARTED}"
        )
    if len(repos) >= LOOKUP_LIMIT:
        return (
            f"{not_id}; many repositories contain {name!r} and none of the first {LOOKUP_LIMIT} is named exactly "
            f"that. Call list_repos with a longer query (owner/name) and pass the id it shows. {_NOT_STARTED}"
        )
    if repos:
        return (
            f"{not_id}; no repository is named exactly {name!r}, but these contain it: {_listed(repos)}. If one of "
            f"them is meant, call start_run with its id as repoId. {_NOT_STARTED}"
        )
    return (
        f"{not_id}, and no repository matches "
        f"the name {name!r}. Call list_repos (no query) to see the repositories this token can use, or connect "
        f"it in Mogplex first. {_NOT_STARTED}"
    )
