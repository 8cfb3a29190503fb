"""One API call as sent: its method, path, body and headers; run paths, the base URL and the token, normalized.

`MogplexClient` (client.py) builds a `Call` per API method and sends it, unchanged, on every attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mogplex_mcp.api.errors import UpstreamTimeoutError
from mogplex_mcp.api.models import RunDetail, checked_uuid
from mogplex_mcp.config import mask_secrets

API_PREFIX = "/api/v1/mogplex"


@dataclass(frozen=True)
class Call:
    """One logical API call: what is sent on every attempt, unchanged."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


def bare_token(token: str | None) -> str | None:
    """The token without surrounding space or a pasted "Bearer " prefix (we add that ourselves)."""
    token = (token or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token or None


def out_of_time(call: Call, limit_name: str) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(f"{call.what}: {limit_name} ran out before an answer arrived")


def normalize_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    if url.endswith(API_PREFIX):  # a pasted full API URL still works
        url = url[: -len(API_PREFIX)].rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        shown = mask_secrets(re.sub(r"^([^/]*//)?[^/@]*@", r"\1<credentials not shown>@", url))[:80]
        raise ValueError(f"base_url must be an http(s) URL such as https://mogplex.com, got {shown!r}")
    return url


def run_path(run_id: str, action: str | None = None) -> str:
    """A run id is one path segment, never a path: anything but a UUID is refused before sending."""
    run_id = checked_uuid(run_id, "runId", "the runId that start_run returned")
    return f"/runs/{run_id}" + (f"/{action}" if action else "")


def run_from(data: Any) -> RunDetail:
    """POST /runs answers the run bare (plus `replayed`); GET /runs/{id} wraps it in `run`."""
    if isinstance(data, dict) and isinstance(data.get("run"), dict):
        data = data["run"]
    return RunDetail.model_validate(data)
