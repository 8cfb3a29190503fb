"""Request validation as production does it: start-run bodies, branch names, Idempotency-Key, limits."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

PROMPT_MAX = 100_000
IDEMPOTENCY_KEY_MAX = 200
HARNESSES = ("codex", "claude-code")
NEWER_HARNESSES = (*HARNESSES, "mogplex")  # later service code
LIMIT_MAX = 200
LIMIT_DEFAULT = 100
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BRANCH_CHARS = re.compile(r"^[A-Za-z0-9_./-]+$")
# JavaScript's String.prototype.trim() whitespace: the service trims with it.
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501


class RequestInvalid(Exception):
    """A request the service answers with 400 BAD_REQUEST; the message says what is wrong."""


@dataclass(frozen=True)
class StartRequest:
    """A validated POST /runs body, normalized (trimmed, defaults that need no repo applied)."""

    repo_id: str
    prompt: str
    harness: str
    base_branch: str | None
    working_branch: str | None
    create_branch: bool
    root_directory: str | None
    conversation_id: str | None
    workspace_session_id: str | None
    mode: str | None

    def fingerprint(self) -> str:
        """Canonical JSON of the normalized body: equal fingerprints replay, different ones conflict."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)


def js_trim(text: str) -> str:
    return text.strip(_JS_SPACE)


def js_length(text: str) -> int:
    """Length in UTF-16 code units, as the service counts its 100,000-char limit."""
    return len(text.encode("utf-16-le")) // 2


def is_uuid(value: str) -> bool:
    return UUID_RE.match(value) is not None


def branch_problem(name: str) -> str | None:
    """Why `name` is not a valid branch name, or None."""
    bad_chars = set("*:?[\\^~")
    checks = (
        (name == "", "is empty"),
        (name in ("@", "HEAD"), f"cannot be {name!r}"),
        (name.startswith("/"), "cannot start with '/'"),
        (name.endswith(("/", ".", ".lock")), "cannot end with '/', '.' or '.lock'"),
        (any(part in name for part in ("..", "//", "@{")), "cannot contain '..', '//' or '@{'"),
        (any(ch.isspace() for ch in name), "cannot contain whitespace"),
        (any(ch in bad_chars for ch in name), "cannot contain any of * : ? [ \\ ^ ~"),
        (not _BRANCH_CHARS.match(name), "may only contain letters, digits and _ . / -"),
    )
    return next((problem for failed, problem in checks if failed), None)


def root_directory_problem(path: str) -> str | None:
    """Why `path` is not an acceptable monorepo subpath, or None."""
    if "\x00" in path:
        return "cannot contain NUL"
    segments = path.split("/")
    if ".." in segments:
        return "cannot contain '..'"
    if "" in segments:
        return "cannot contain empty segments"
    return None


def idempotency_key(header: str | None) -> str:
    """The trimmed Idempotency-Key, or RequestInvalid."""
    key = (header or "").strip()
    if not key:
        raise RequestInvalid("Idempotency-Key header is required")
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise RequestInvalid(f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX} characters")
    return key


def parse_limit(raw: str | None, *, strict: bool, maximum: int = LIMIT_MAX, default: int = LIMIT_DEFAULT) -> int:
    """`limit` 1..maximum: strict (documented) rejects anything else, lenient (observed) clamps."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        if strict:
            raise RequestInvalid(f"limit must be an integer between 1 and {maximum}") from None
        return default
    if strict and not 1 <= value <= maximum:
        raise RequestInvalid(f"limit must be an integer between 1 and {maximum}")
    return max(1, min(maximum, value))


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestInvalid(f"{name} must be a string or null")
    return value


def _branch(body: dict[str, Any], name: str) -> str | None:
    value = _optional_string(body, name)
    if value is None:
        return None
    value = js_trim(value)
    problem = branch_problem(value)
    if problem:
        raise RequestInvalid(f"Invalid branch name: {name} {problem}")
    return value


def _root_directory(body: dict[str, Any]) -> str | None:
    value = _optional_string(body, "rootDirectory")
    if value is None or not js_trim(value).strip("/"):
        return None
    value = js_trim(value).strip("/")
    problem = root_directory_problem(value)
    if problem:
        raise RequestInvalid(f"Invalid rootDirectory: {problem}")
    return value


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not js_trim(prompt):
        raise RequestInvalid("prompt is required")
    prompt = js_trim(prompt)
    if js_length(prompt) > PROMPT_MAX:
        raise RequestInvalid(f"prompt must be at most {PROMPT_MAX} characters")
    return prompt


def parse_start_request(raw: bytes, harnesses: tuple[str, ...] = HARNESSES) -> StartRequest:
    """Validate a POST /runs body the way the service does, or raise RequestInvalid."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RequestInvalid("Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise RequestInvalid("Request body must be a JSON object")
    repo_id = body.get("repoId")
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise RequestInvalid("repoId is required")
    prompt = _prompt(body)
    harness = body.get("harness", "codex")
    if harness is None:
        harness = "codex"
    if harness not in harnesses:
        raise RequestInvalid(f"Invalid harness: expected one of {', '.join(harnesses)}")
    request = StartRequest(
        repo_id=repo_id.strip(),
        prompt=prompt,
        harness=str(harness),
        base_branch=_branch(body, "baseBranch"),
        working_branch=_branch(body, "workingBranch"),
        create_branch=body.get("createBranch") is True,
        root_directory=_root_directory(body),
        conversation_id=_optional_string(body, "conversationId"),
        workspace_session_id=_optional_string(body, "workspaceSessionId"),
        mode=_optional_string(body, "mode"),
    )
    if request.create_branch and request.working_branch and request.working_branch == request.base_branch:
        raise RequestInvalid("workingBranch must differ from baseBranch when createBranch is true")
    return request
