"""Settings: one frozen object built from the environment and command-line flags.

A leaf module: it imports nothing of ours, so every layer may depend on it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://mogplex.com"
TOKEN_ENV = "MOGPLEX_TOKEN"  # noqa: S105 - the variable name, not a secret
BASE_URL_ENV = "MOGPLEX_BASE_URL"
REDIS_URL_ENV = "MOGPLEX_REDIS_URL"

# Claude Desktop passes an unfilled optional user_config entry through as this literal text.
_UNFILLED_PLACEHOLDER = re.compile(r"^\$\{user_config\.[^}]*\}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# Anything shaped like a credential, wherever it sits (even glued to a word: "MOGPLEX_TOKEN_mog_…").
_TOKEN_SHAPED = re.compile(
    r"(?<![A-Za-z0-9])(?:mog_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|sk-[A-Za-z0-9_-]{16,}|xox[abpr]-[A-Za-z0-9-]{10,})"
)


def mask_token(token: str | None) -> str:
    """Show enough of a token to recognise it, never enough to use it."""
    if not token:
        return "<unset>"
    if token.startswith("mog_") and len(token) > 8:
        return f"mog_…{token[-2:]} ({len(token)} chars)"
    return f"…({len(token)} chars)"


def mask_secrets(text: str) -> str:
    """`text` with every token-shaped run masked (`mog_…Xy (28 chars)`): for messages and config snippets."""
    return _TOKEN_SHAPED.sub(lambda match: f"<{mask_token(match.group(0))}>", text)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and how to set it, and never shows a token."""

    def __init__(self, message: str) -> None:
        super().__init__(mask_secrets(message))


# Settings field -> env var, for the Redis time budgets (flags: --redis-timeout, --redis-read-timeout, ...).
REDIS_SECONDS_SETTINGS = {
    "redis_timeout_seconds": "MOGPLEX_REDIS_TIMEOUT_SECONDS",
    "redis_read_timeout_seconds": "MOGPLEX_REDIS_READ_TIMEOUT_SECONDS",
    "redis_call_budget_seconds": "MOGPLEX_REDIS_CALL_BUDGET_SECONDS",
    "redis_breaker_seconds": "MOGPLEX_REDIS_BREAKER_SECONDS",
}


def mask_redis_url(url: str) -> str:
    """A Redis URL fit for logs: any userinfo secret and any `password=` parameter replaced by ***.

    It does not parse the URL: everything between `scheme://` and the *last* `@` is the userinfo, so a
    password holding `#`, `?`, `/` or `@` (ElastiCache tokens, Azure keys) is masked even where a URL parser
    would cut the address elsewhere. A `password=` value is masked up to the next `&` (a `#` does not end it).
    """
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", url.strip(), re.DOTALL)
    if match is None:
        return "<not a redis:// URL>"
    scheme, rest = match.groups()
    userinfo, at, after = rest.rpartition("@")
    if at:
        user, colon, _secret = userinfo.partition(":")
        # `redis://secret@host` is a username to redis-py, but people write passwords there: mask it too.
        plain_user = colon and user and not re.search(r"[/?#\s]", user)
        rest = f"{user}:***@{after}" if plain_user else f"***@{after}"
    return scheme + re.sub(r"(?i)(password=)[^&]*", r"\1***", rest)


def clean_env_value(value: str | None) -> str | None:
    """Treat empty strings and unfilled `${user_config.x}` placeholders as unset."""
    if value is None:
        return None
    value = value.strip()
    if not value or _UNFILLED_PLACEHOLDER.match(value):
        return None
    return value


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the start journal lives: $MOGPLEX_MCP_STATE_DIR, else XDG state, else ~/.local/state."""
    env = os.environ if env is None else env
    explicit = clean_env_value(env.get("MOGPLEX_MCP_STATE_DIR"))
    if explicit:
        return Path(explicit).expanduser()
    xdg = clean_env_value(env.get("XDG_STATE_HOME"))
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "mogplex-mcp"


@dataclass(frozen=True)
class Settings:
    """Everything the server and client need to know, fixed for the process's life."""

    token: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Retries: attempts after the first, and the wall-clock budget all retries of one call share.
    max_retries: int = 2
    retry_budget_seconds: float = 20.0
    # The longest Retry-After we sleep through; beyond it we stop and report the delay.
    max_retry_after_seconds: float = 10.0
    # A start_run identical to one made this recently reuses its Idempotency-Key (0 disables).
    dedupe_window_seconds: float = 600.0
    # How long a start waits for the journal file's write lock before claiming in memory instead.
    journal_wait_seconds: float = 2.0
    state_dir: Path = field(default_factory=default_state_dir)
    read_only: bool = False
    # Over HTTP, use MOGPLEX_TOKEN when a request brings no bearer of its own. Off unless the HTTP
    # transport decides it is safe (bound to loopback, no proxy in front); stdio always uses MOGPLEX_TOKEN.
    http_token_fallback: bool = False
    wait_default_seconds: float = 20.0
    wait_max_seconds: float = 50.0
    # Upstream budgets (docs/http.md "Limits"): the request pool, the separate event-stream budget, each
    # token's share of both, how long a 401 is remembered, and the largest answer or stream event read.
    upstream_connections: int = 20
    upstream_per_token: int = 4
    upstream_streams: int = 100
    upstream_streams_per_token: int = 25
    rejected_token_seconds: float = 30.0
    # Tokens upstream has not accepted yet: requests that may wait per client address (then refused at once).
    unverified_waiting: int = 16
    # How long an acceptance by upstream lets a token skip that queue (also across restarts: the state dir/Redis).
    verified_token_seconds: float = 7 * 24 * 3600.0
    # Cached run data (runs list, a run's events) is served only to a token upstream accepted this recently;
    # older, the tool asks upstream first (a 401 then ends it).
    recheck_token_seconds: float = 300.0
    # Known runs kept per token are forgotten this long after they were last seen (the journal and Redis).
    known_run_max_age_days: float = 30.0
    max_response_bytes: int = 4 * 1024 * 1024
    max_stream_event_bytes: int = 1024 * 1024
    # list_runs reads at most this many active runs' statuses per call (and only within the token's pacer).
    list_refresh_max: int = 5
    # Each token's follower budget: upstream requests per sliding minute (shared by replicas with Redis).
    follow_requests_per_minute: int = 40
    # Bytes of events followers keep (estimated: characters of text), per run and all together (issue 23, #4).
    run_event_bytes: int = 8 * 1024 * 1024
    event_cache_bytes: int = 64 * 1024 * 1024
    # Shared state for several replicas (start claims, request budgets); None: the embedded SQLite/in-memory one.
    redis_url: str | None = field(default=None, repr=False)
    # How long Redis may take (docs/scale.md "Budgets"): one command; a read this replica can answer from its
    # journal instead; all Redis commands of one tool call together; and, after a timeout, how long it is not
    # asked at all (circuit breaker; then one probe).
    redis_timeout_seconds: float = 2.0
    redis_read_timeout_seconds: float = 0.5
    redis_call_budget_seconds: float = 3.0
    redis_breaker_seconds: float = 3.0
    # What run feeds may hold in Redis: per run, and per token per hour (docs/scale.md "Redis memory").
    redis_feed_run_bytes: int = 1024 * 1024
    redis_feed_token_bytes: int = 8 * 1024 * 1024

    def __repr__(self) -> str:
        redis = f", redis_url={mask_redis_url(self.redis_url)!r}" if self.redis_url else ""
        return (
            f"Settings(token={mask_token(self.token)!s}, base_url={self.base_url!r}, "
            f"read_only={self.read_only}, state_dir={str(self.state_dir)!r}{redis})"
        )

    __str__ = __repr__

    @property
    def masked_token(self) -> str:
        return mask_token(self.token)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read MOGPLEX_* variables; explicit overrides (from flags) win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        token = clean_env_value(env.get(TOKEN_ENV))
        if token:
            values["token"] = token
        base_url = clean_env_value(env.get(BASE_URL_ENV))
        if base_url:
            values["base_url"] = _normalize_base_url(base_url, BASE_URL_ENV)
        values["state_dir"] = default_state_dir(env)
        redis_url = clean_env_value(env.get(REDIS_URL_ENV))
        if redis_url:
            values["redis_url"] = check_redis_url(redis_url, REDIS_URL_ENV)
        read_only = clean_env_value(env.get("MOGPLEX_READ_ONLY"))
        if read_only is not None:
            values["read_only"] = _parse_bool(read_only, "MOGPLEX_READ_ONLY")
        for name, env_name in (
            ("dedupe_window_seconds", "MOGPLEX_DEDUPE_WINDOW_SECONDS"),
            ("journal_wait_seconds", "MOGPLEX_JOURNAL_WAIT_SECONDS"),
            ("read_timeout", "MOGPLEX_READ_TIMEOUT_SECONDS"),
            ("retry_budget_seconds", "MOGPLEX_RETRY_BUDGET_SECONDS"),
            ("rejected_token_seconds", "MOGPLEX_REJECTED_TOKEN_SECONDS"),
            ("verified_token_seconds", "MOGPLEX_VERIFIED_TOKEN_SECONDS"),
            ("recheck_token_seconds", "MOGPLEX_RECHECK_TOKEN_SECONDS"),
            ("known_run_max_age_days", "MOGPLEX_KNOWN_RUN_MAX_AGE_DAYS"),
            *REDIS_SECONDS_SETTINGS.items(),
        ):
            raw = clean_env_value(env.get(env_name))
            if raw is not None:
                values[name] = _parse_seconds(raw, env_name)
        for name, env_name in COUNT_SETTINGS.items():
            raw = clean_env_value(env.get(env_name))
            if raw is not None:
                values[name] = _parse_count(raw, env_name)
        raw_retries = clean_env_value(env.get("MOGPLEX_MAX_RETRIES"))
        if raw_retries is not None:
            # ASCII digits only: str.isdigit() also accepts "²", which int() then rejects with a bare ValueError.
            if not re.fullmatch(r"[0-9]{1,2}", raw_retries) or int(raw_retries) > 10:
                raise ConfigError(f"MOGPLEX_MAX_RETRIES must be a whole number 0..10, got {raw_retries!r}")
            values["max_retries"] = int(raw_retries)
        raw_refresh = clean_env_value(env.get("MOGPLEX_LIST_REFRESH_MAX"))
        if raw_refresh is not None:
            if not re.fullmatch(r"[0-9]{1,2}", raw_refresh) or int(raw_refresh) > 20:
                raise ConfigError(f"MOGPLEX_LIST_REFRESH_MAX must be a whole number 0..20, got {raw_refresh!r}")
            values["list_refresh_max"] = int(raw_refresh)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "base_url":
                value = _normalize_base_url(str(value), "--base-url")
            if key == "redis_url":
                value = check_redis_url(str(value), "--redis-url")
            values[key] = value
        return cls(**values)


# Whole-number limits read from the environment, each at least 1.
COUNT_SETTINGS: dict[str, str] = {
    "upstream_connections": "MOGPLEX_UPSTREAM_CONNECTIONS",
    "upstream_per_token": "MOGPLEX_UPSTREAM_PER_TOKEN",
    "unverified_waiting": "MOGPLEX_UNVERIFIED_WAITING",
    "upstream_streams": "MOGPLEX_UPSTREAM_STREAMS",
    "upstream_streams_per_token": "MOGPLEX_UPSTREAM_STREAMS_PER_TOKEN",
    "max_response_bytes": "MOGPLEX_MAX_RESPONSE_BYTES",
    "max_stream_event_bytes": "MOGPLEX_MAX_STREAM_EVENT_BYTES",
    "follow_requests_per_minute": "MOGPLEX_FOLLOW_REQUESTS_PER_MINUTE",
    "run_event_bytes": "MOGPLEX_RUN_EVENT_BYTES",
    "event_cache_bytes": "MOGPLEX_EVENT_CACHE_BYTES",
    "redis_feed_run_bytes": "MOGPLEX_REDIS_FEED_RUN_BYTES",
    "redis_feed_token_bytes": "MOGPLEX_REDIS_FEED_TOKEN_BYTES",
}


def _parse_count(raw: str, name: str) -> int:
    """A whole number of at least 1 (ASCII digits only, see MOGPLEX_MAX_RETRIES); a *_BYTES size may end in KB/MB."""
    sized = name.endswith("_BYTES")
    match = re.fullmatch(r"([0-9]{1,12})\s*([KkMm][Bb])?" if sized else r"([0-9]{1,12})()", raw.strip())
    if match is None or int(match.group(1)) < 1:
        unit = " of bytes (or KB/MB, e.g. 4MB)" if sized else ""
        raise ConfigError(f"{name} must be a whole number{unit}, 1 or more, got {raw[:40]!r}")
    return int(match.group(1)) * {"": 1, "kb": 1024, "mb": 1024 * 1024}[(match.group(2) or "").lower()]


def check_redis_url(url: str, source: str) -> str:
    """A redis://, rediss:// or unix:// URL that parses as written; the error never shows the password.

    A password with `#`, `?` or `/` in it must be percent-encoded: unencoded, a URL parser ends the address
    there (redis-py would then take part of the password for the host or port, or fail with it in a traceback).
    """
    url = url.strip()
    shown = repr(mask_redis_url(url)[:80])
    if not re.match(r"^(rediss?://[^/?#\s]+|unix://\S+)", url, re.IGNORECASE):
        raise ConfigError(
            f"{source} must be a Redis URL such as redis://localhost:6379/0 or rediss://:PASSWORD@host:6380/0"
            f" (got {shown})"
        )
    if url.lower().startswith("unix://"):
        return url
    parts = urlsplit(url)
    after_scheme = url.split("://", 1)[1]
    if "@" in after_scheme and "@" not in parts.netloc:
        raise ConfigError(
            f"{source} cannot be read as a URL: its password (or user name) holds a character that ends the"
            f" address part. Percent-encode it: # as %23, ? as %3F, / as %2F, @ as %40, % as %25 (got {shown})"
        )
    try:
        port_ok = parts.hostname is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        port_ok = False
    if not port_ok:
        raise ConfigError(
            f"{source} cannot be read as a URL: it needs a host and, if given, a numeric port after the last"
            f" `@` (percent-encode `@`, `:` or `/` in the password) (got {shown})"
        )
    return url


def _normalize_base_url(url: str, source: str) -> str:
    """Validate a base URL without ever echoing a credential that was pasted into it."""
    url = url.strip().rstrip("/")
    if _TOKEN_SHAPED.fullmatch(url) or url.lower().startswith("bearer "):
        raise ConfigError(f"{source} holds what looks like a token, not a URL: set the token as {TOKEN_ENV}")
    if not re.match(r"^https?://[^/\s]+", url):
        shown = mask_secrets(url)[:80]  # masked before the cut, so no half of a token is left to show
        raise ConfigError(f"{source} must be an http(s) URL such as {DEFAULT_BASE_URL} (got {shown!r})")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigError(
            f"{source} must not contain a user name or password (the part before '@' was not shown): "
            f"give only the address, such as {DEFAULT_BASE_URL}, and set the token as {TOKEN_ENV}"
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(
            f"{source} must not have a query or fragment (not shown): give only the address, "
            f"such as {DEFAULT_BASE_URL}; the token belongs in {TOKEN_ENV}"
        )
    if _TOKEN_SHAPED.search(url):
        shown = mask_secrets(url)[:100]
        raise ConfigError(f"{source} contains what looks like a token ({shown}): set the token as {TOKEN_ENV}")
    return url


def _parse_bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw[:40]!r}")


def _parse_seconds(raw: str, name: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw[:40]!r}") from None
    if not 0 <= seconds < float("inf"):  # also rejects NaN, and "inf" which would unbound retries
        raise ConfigError(f"{name} must be a finite number of seconds, zero or more, got {raw[:40]!r}")
    return seconds
