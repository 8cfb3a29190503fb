"""Wire models of the Mogplex v1 runs API: documented and observed variants, normalized once here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from mogplex_mcp.api.errors import InvalidRequestError, scrub

TERMINAL_STATUSES: frozenset[str] = frozenset({"success", "failed", "cancelled"})
"""The only statuses after which a run never changes. Anything else — including statuses we have
never seen, such as `awaiting_input` — is treated as still active."""

KNOWN_STATUSES: tuple[str, ...] = ("pending", "streaming", "awaiting_input", "success", "failed", "cancelled")
HARNESSES: tuple[str, ...] = ("codex", "claude-code")
Harness = Literal["codex", "claude-code"]
# What a start may carry: the documented two, plus `mogplex` (later service code), which only a follow-up
# of a run that reported it sends — start_run offers the documented two.
StartHarness = Literal["codex", "claude-code", "mogplex"]
CancelOutcome = Literal["cancellation_requested", "already_terminal"]

PROMPT_MAX_CHARS = 100_000
IDEMPOTENCY_KEY_MAX_CHARS = 200
EVENTS_LIMIT_MAX = 200
REPOS_LIMIT_MAX = 200

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BRANCH_ALLOWED = re.compile(r"[A-Za-z0-9_./-]+")
# A "." or ".." segment written percent-encoded: the service rejects these in a rootDirectory.
_ENCODED_DOT_SEGMENT = re.compile(r"(?:^|/)%2e(?:%2e)?(?:/|$)", re.IGNORECASE)
# What JavaScript's String.prototype.trim() removes (the service trims with it, not with Python's rules).
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def is_uuid(value: str) -> bool:
    """True for a canonical 8-4-4-4-12 hex UUID — the only shape a run or repo id may take in a URL."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def js_trim(value: str) -> str:
    """Trim the way the service does (JavaScript's `trim()`), so our limits match its limits."""
    return value.strip(_JS_WHITESPACE)


def js_length(value: str) -> int:
    """Length as JavaScript counts it (UTF-16 code units): the service's 100,000-char limit is in these."""
    return len(value.encode("utf-16-le")) // 2


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not a valid branch name by the service's rules, or None when it is."""
    if name == "":
        return "is empty"
    if name in ("@", "HEAD"):
        return f"cannot be {name!r}"
    if name.startswith("/"):
        return "cannot start with '/'"
    for suffix in ("/", ".", ".lock"):
        if name.endswith(suffix):
            return f"cannot end with {suffix!r}"
    for bad in ("..", "//", "@{"):
        if bad in name:
            return f"cannot contain {bad!r}"
    if any(ch.isspace() for ch in name):
        return "cannot contain whitespace"
    for ch in "*:?[\\^~":
        if ch in name:
            return f"cannot contain {ch!r}"
    if not _BRANCH_ALLOWED.fullmatch(name):
        return "may only contain letters, digits and _ . / -"
    return None


def root_directory_problem(path: str) -> str | None:
    """Why `path` is not an acceptable monorepo subpath, or None when it is."""
    if "\x00" in path:
        return "cannot contain a NUL character"
    path = js_trim(path)
    if _ENCODED_DOT_SEGMENT.search(path):
        return "cannot contain a percent-encoded '.' or '..' segment"
    segments = path.strip("/").split("/")
    if any(segment == ".." for segment in segments):
        return "cannot contain '..'"
    if path.strip("/") and any(segment == "" for segment in segments):
        return "cannot contain empty segments ('//')"
    return None


def idempotency_key_problem(key: str) -> str | None:
    """Why `key` cannot be sent as an Idempotency-Key header, or None when it can (after trimming)."""
    stripped = key.strip()
    if not stripped:
        return "is empty"
    if len(stripped) > IDEMPOTENCY_KEY_MAX_CHARS:
        return f"is longer than {IDEMPOTENCY_KEY_MAX_CHARS} characters"
    # An HTTP header carries printable ASCII only; anything else would fail in the HTTP layer instead.
    if any(not " " <= ch <= "~" for ch in stripped):
        return "may only contain printable ASCII characters"
    return None


def checked_uuid(value: object, name: str, hint: str) -> str:
    """`value` if it is a canonical UUID, else InvalidRequestError naming `name` and where to get one."""
    if not isinstance(value, str) or not is_uuid(value):
        shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
        raise InvalidRequestError(f"{name} must be a UUID ({hint}), got {scrub(shown)}")
    return value


def checked_limit(limit: object, maximum: int) -> int:
    """`limit` if it is a whole number in 1..maximum, else InvalidRequestError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidRequestError(f"limit must be a whole number from 1 to {maximum}, got {limit!r}")
    return limit


def checked_idempotency_key(key: object) -> str:
    """The trimmed key if the service (and an HTTP header) will take it, else InvalidRequestError."""
    if not isinstance(key, str):
        raise InvalidRequestError("idempotency_key must be a string")
    problem = idempotency_key_problem(key)
    if problem:
        raise InvalidRequestError(f"idempotency_key {problem}")
    return key.strip()


class _Wire(BaseModel):
    """Base for camelCase wire objects: tolerant of fields we do not know."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


def _lenient_datetime(value: Any) -> Any:
    """Timestamps are ISO-8601 but we never fail a whole response over a malformed one."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


LenientDatetime = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]


FIELD_MAX_CHARS = 500


def _cap(value: Any) -> Any:
    """Upstream strings are data we echo to a model: never let one be unbounded (a broken answer)."""
    if isinstance(value, str) and len(value) > FIELD_MAX_CHARS:
        return value[:FIELD_MAX_CHARS] + "…"
    return value


Short = Annotated[str, BeforeValidator(_cap)]


def _error_text(value: Any) -> Any:
    """A run's `error` is documented as a string but may arrive as an object; keep it readable."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        message = value.get("message") or value.get("code")
        if isinstance(message, str):
            return message
    return str(value)


class StartRunRequest(_Wire):
    """`StartMogplexApiRunRequest`, validated with the service's own rules before anything is sent."""

    repo_id: str = Field(min_length=1, max_length=200)
    prompt: str
    harness: StartHarness | None = None
    base_branch: str | None = None
    working_branch: str | None = None
    create_branch: bool | None = None
    root_directory: str | None = None
    conversation_id: str | None = Field(default=None, max_length=200)
    workspace_session_id: str | None = Field(default=None, max_length=200)
    mode: str | None = Field(default=None, max_length=100)

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        value = js_trim(value)
        if not value:
            raise ValueError("repoId is required (get one from list_repos)")
        if "/" in value or "\x00" in value:
            raise ValueError("repoId must be a repository id from list_repos, not a name or path")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        value = js_trim(value)
        if not value:
            raise ValueError("prompt is required and cannot be blank")
        length = js_length(value)
        if length > PROMPT_MAX_CHARS:
            raise ValueError(
                f"prompt is {length:,} characters (UTF-16 units, as the service counts); "
                f"the limit is {PROMPT_MAX_CHARS:,}"
            )
        return value

    @field_validator("base_branch", "working_branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = branch_name_problem(value)
        if problem:
            raise ValueError(f"invalid branch name: it {problem}")
        return value

    @field_validator("root_directory")
    @classmethod
    def _root_directory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = root_directory_problem(value)
        if problem:
            raise ValueError(f"invalid rootDirectory: it {problem}")
        return value

    @model_validator(mode="after")
    def _branches_differ(self) -> StartRunRequest:
        if self.create_branch and self.working_branch is not None and self.working_branch == self.base_branch:
            raise ValueError("workingBranch must differ from baseBranch when createBranch is true")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON body: camelCase, fields left unset are omitted so the service applies its defaults."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Branch(_Wire):
    base: Short | None = None
    working: Short | None = None
    create_branch: bool | None = None


class Runtime(_Wire):
    provider: Short | None = None
    run_id: Short | None = None


class RunDetail(_Wire):
    """A run as GET /runs/{id} (wrapped in `run`) and POST /runs (bare) return it."""

    run_id: Short
    status: Short
    harness: Short | None = None
    repo_id: Short | None = None
    ai_call_id: Short | None = None
    sandbox_record_id: Short | None = None
    sandbox_id: Short | None = None
    branch: Branch | None = None
    root_directory: Short | None = None
    events_url: Short | None = None
    cancel_url: Short | None = None
    created_at: LenientDatetime = None
    updated_at: LenientDatetime = None
    error: Annotated[str | None, BeforeValidator(_error_text), BeforeValidator(_cap)] = None
    runtime: Runtime | None = None

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)


class StartedRun(BaseModel):
    """What `start_run` gives back: the run, whether the service replayed it, the key, the attempts it took."""

    model_config = ConfigDict(frozen=True)

    run: RunDetail
    replayed: bool
    idempotency_key: str
    attempts: int = 1
    retried_after: str | None = None  # what the last retried attempt got instead of the run ("HTTP 500", …)

    @property
    def recovered(self) -> bool:
        """The replay answered this call's own retry: an earlier attempt reached Mogplex, its answer did not."""
        return self.replayed and self.attempts > 1


class RunEvent(_Wire):
    """One event. `type` is an open set: unknown types pass through untouched."""

    id: Short
    type: Short
    tool_name: Short | None = None
    message: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: LenientDatetime = None

    @field_validator("payload", mode="before")
    @classmethod
    def _payload(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return {"value": value}
        return value


class EventPage(_Wire):
    """GET /runs/{id}/events: the run and up to `limit` events, oldest first (no cursor upstream)."""

    run: RunDetail
    events: list[RunEvent] = Field(default_factory=list)


class CancelResult(_Wire):
    """POST /runs/{id}/cancel, normalized from both the documented and the observed shape.

    Documented: `{run, status: "cancellation_requested" | "already_terminal"}`.
    Observed:   `{run, status: <a run status>, alreadyTerminal: bool}`.
    """

    run: RunDetail
    outcome: CancelOutcome

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "outcome" in data:
            return data
        status = data.get("status")
        already = data.get("alreadyTerminal", data.get("already_terminal"))
        if isinstance(already, bool):
            outcome = "already_terminal" if already else "cancellation_requested"
        elif status in ("cancellation_requested", "already_terminal"):
            outcome = status
        else:
            outcome = "cancellation_requested"
        return {"run": data.get("run"), "outcome": outcome}


class Repo(BaseModel):
    """A repository from GET /repos (snake_case on the wire, unlike runs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Short
    full_name: Short = Field(validation_alias=AliasChoices("full_name", "fullName"))
    installation_id: int | str | None = Field(
        default=None, validation_alias=AliasChoices("installation_id", "installationId")
    )
    default_branch: Short | None = Field(default=None, validation_alias=AliasChoices("default_branch", "defaultBranch"))
    root_directory: Short | None = Field(default=None, validation_alias=AliasChoices("root_directory", "rootDirectory"))


class RepoList(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    repos: list[Repo] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The `error` object of a failure envelope."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: str = "UNKNOWN"
    message: str = ""
