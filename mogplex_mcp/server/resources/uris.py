"""The run resources' URIs: `mogplex://runs/{runId}` (state), `/events` (event log), `/log` (transcript)."""

from __future__ import annotations

import re

from mogplex_mcp.api.models import is_uuid

RUN_URI = "mogplex://runs/{runId}"
EVENTS_URI = "mogplex://runs/{runId}/events"
LOG_URI = "mogplex://runs/{runId}/log"
_RUN_URI = re.compile(r"^mogplex://runs/([^/?#]+)(?:/(?:events|log))?$")


def run_uris(run_id: str) -> tuple[str, str, str]:
    """The three resources of one run: state, event log, transcript."""
    base = f"mogplex://runs/{run_id}"
    return base, f"{base}/events", f"{base}/log"


def run_id_in(uri: str) -> str | None:
    """The run a `mogplex://runs/...` URI names, if it is one of ours with a well-formed id."""
    match = _RUN_URI.match(uri)
    return match.group(1) if match and is_uuid(match.group(1)) else None
