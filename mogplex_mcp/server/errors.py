"""Upstream and argument errors turned into messages a model can act on (raised as `ToolError`).

One form everywhere: `<tool>: <what is wrong, naming the argument>. <the call that fixes it>.` The tool's
name is put in front once, by `MogplexServer.call_tool` (`with_tool_name`); argument errors say
"invalid arguments" and "Nothing was sent to Mogplex.".
"""

from __future__ import annotations

import math

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from mogplex_mcp.api import errors as api
from mogplex_mcp.config import TOKEN_ENV
from mogplex_mcp.runs.sanitize import clean_text, shorten
from mogplex_mcp.runs.store import StartClaimsUnavailableError

_MISSING_TOKEN = (
    f"No Mogplex token is configured. Create a personal access token (mog_…) in Mogplex settings and set it "
    f"as {TOKEN_ENV} in this MCP server's environment (Claude Desktop: the extension's settings; other hosts: "
    f'the "env" block of the server entry), then restart the server. Over HTTP, send it as '
    f"'Authorization: Bearer mog_…'."
)


def _seconds(value: float | None) -> str:
    # An upstream Retry-After can be anything a float parses: "1e309" is infinity, and ceil(inf) raises.
    if value is None or not math.isfinite(value):
        return "a minute"
    return f"{math.ceil(value)} s"


def _auth_message() -> str:
    return (
        "Mogplex rejected the token (401): it is missing, mistyped, expired or revoked. "
        f"Check {TOKEN_ENV} (it starts with 'mog_'), or create a new personal access token in Mogplex settings."
    )


def _forbidden_message(exc: api.PermissionDeniedError, action: str) -> str:
    if exc.code == "AUTOMATION_REQUIRED":
        return (
            f"Mogplex refused to {action} (403 AUTOMATION_REQUIRED): this token may only run automations (a team "
            "setting), not start runs. Create a full-access personal access token in Mogplex settings (or ask a "
            f"team admin to allow it) and set it as {TOKEN_ENV}."
        )
    return (
        f"Mogplex refused to {action} (403): the token lacks the scope for it. Starting and cancelling runs "
        "need a token with the 'write' scope; reading needs 'read'. Create a token with both scopes."
    )


def _not_found_message(action: str, argument: str) -> str:
    if argument == "repoId":
        return (
            f"not found while trying to {action}: no repository with this repoId is connected, or it "
            "belongs to another account. Call list_repos and pass one of its ids as repoId."
        )
    return (
        f"not found while trying to {action}: no run with this runId exists, or it belongs to another "
        "account. Pass the runId that start_run returned (the list_runs tool shows the runs this server knows)."
    )


def _rate_limited_message(retry_after: float | None) -> str:
    return (
        f"Mogplex rate limit reached (60 requests/min per token; run starts 10/min, 30/h, 150/day). "
        f"Retry after {_seconds(retry_after)}; do not retry sooner."
    )


def _status_message(exc: api.ApiStatusError, action: str, argument: str) -> str:
    """One function: which class of upstream answer becomes which sentence."""
    if isinstance(exc, api.AuthenticationError):
        return _auth_message()
    if isinstance(exc, api.PermissionDeniedError):
        return _forbidden_message(exc, action)
    if isinstance(exc, api.NotFoundError):
        return _not_found_message(action, argument)
    if isinstance(exc, api.IdempotencyConflictError):
        return (
            "This idempotencyKey was already used for a different request (409). Each key identifies one "
            "start: reuse it only to retry exactly the same arguments, or pass a new key (or none) to "
            "start a different run."
        )
    if isinstance(exc, api.ConflictError):
        return (
            f"Mogplex could not {action} right now (409 conflict: the run's sandbox is unreachable or not "
            f"ready). Check the run with get_run and try again in a little while. ({exc.message})"
        )
    if isinstance(exc, api.RateLimitedError):
        return _rate_limited_message(exc.retry_after)
    if isinstance(exc, api.ServiceUnavailableError):
        return f"Mogplex is temporarily unavailable (503). Retry after {_seconds(exc.retry_after)}."
    if isinstance(exc, api.BadRequestError):
        return f"Mogplex rejected the request (400): {exc.message}. Fix the arguments and call again."
    if isinstance(exc, api.UnexpectedResponseError):
        return f"Mogplex answered with something unreadable while trying to {action}: {exc.message}"
    if isinstance(exc, api.ServerError):
        return (
            f"Mogplex failed while trying to {action} (HTTP {exc.status}) even after retrying. "
            "It is likely a temporary outage: try again in a minute."
        )
    return f"Mogplex answered HTTP {exc.status} while trying to {action}: {exc.message}"


def tool_error(exc: api.MogplexError, action: str, *, token: str | None = None, argument: str = "runId") -> ToolError:
    """The ToolError for an upstream failure while doing `action` (e.g. "start the run").

    `argument` is the one a 404 blames: the runId, or the repoId for a start.
    """
    if isinstance(exc, api.MissingTokenError):
        message = _MISSING_TOKEN
    elif isinstance(exc, api.InvalidRequestError):
        message = f"invalid arguments: {exc.message}. Nothing was sent to Mogplex."
    elif isinstance(exc, api.UpstreamTimeoutError):
        message = (
            f"Mogplex did not answer in time while trying to {action}. Nothing is lost: call the same tool "
            "again (start_run with the same arguments will not start a second run)."
        )
    elif isinstance(exc, api.UpstreamConnectError):
        message = (
            f"Could not reach Mogplex to {action} (connection failed or dropped). Check the network or "
            "MOGPLEX_BASE_URL, then call again (a repeated start_run does not start a second run)."
        )
    elif isinstance(exc, api.ApiStatusError):
        message = _status_message(exc, action, argument)
    else:
        message = f"Could not {action}: {exc.message}"
    return ToolError(shorten(clean_text(message, token), 1000))


def missing_token_error() -> ToolError:
    return ToolError(_MISSING_TOKEN)


def validation_error(tool: str, exc: ValidationError, *, sends: bool = True) -> ToolError:
    """Argument errors with field names and reasons, never the rejected values (secrets, huge prompts).

    `sends`: the call would have reached Mogplex (a tool), so the error says nothing was sent; a prompt
    never sends anything, so saying so would be noise.
    """
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"] if part != "__root__") or "arguments"
        reason = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{field}: {reason}")
    listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
    sent = " Nothing was sent to Mogplex." if sends else ""
    return ToolError(shorten(clean_text(f"invalid arguments: {listed}.{sent}"), 1500))


STORE_DOWN_MESSAGE = (
    "start_run is unavailable for a moment: the shared start journal (Redis) cannot be reached, so this server "
    "cannot rule out starting a duplicate paid run. Nothing was sent. Retry in a few seconds; or pass an "
    "explicit idempotencyKey (reuse the same key on every retry of this start) to start without the journal."
)


def claims_unavailable_error(exc: StartClaimsUnavailableError) -> ToolError:
    """start_run refused because no Idempotency-Key could be vouched for (shared store or journal file)."""
    return ToolError(STORE_DOWN_MESSAGE) if exc.shared else journal_unavailable_error(exc.reason)


def journal_unavailable_error(reason: str) -> ToolError:
    """start_run refused because no Idempotency-Key could be vouched for; nothing was sent.

    Retrying is offered only when it can help by itself (a lock held a moment too long); a damaged or
    unreadable file stays so until it is replaced or fixed, which the reason says.
    """
    passing = reason.startswith(("the file is locked", "the journal is busy"))
    retry = "Retry in a moment, or pass" if passing else "Pass"
    return ToolError(
        f"Could not start the run: the start journal is unavailable: {clean_text(reason)}. Nothing was sent, so "
        f"no run was started. {retry} idempotencyKey (any unique string, the same on every retry of this start) "
        "to start it safely now. (`mogplex-mcp doctor` checks the journal.)"
    )


def runs_unreadable_message(reason: str) -> str:
    """The runs list could not be read: said as such, never as an empty list."""
    return (
        f"The runs list could not be read: the start journal is unavailable: {clean_text(reason)}. This is not an "
        "empty list. get_run still reads any run by its id; `mogplex-mcp doctor` checks the journal."
    )


def with_tool_name(tool: str, message: str) -> ToolError:
    """`message` in the one form every error takes: prefixed with the tool's name, once."""
    text = message.removeprefix(f"Error executing tool {tool}: ")
    return ToolError(text if text.startswith(f"{tool}: ") else f"{tool}: {text}")
