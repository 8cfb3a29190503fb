"""Starting a run once: claim the start's Idempotency-Key, send the start, then record or drop the claim.

The one path every `start_run` takes between the tool handler and the client. Hosts time out and models
retry, so an identical start within the de-duplication window reuses the first call's key (the upstream
then replays the first run instead of starting a second paid one). An explicit idempotencyKey skips the
claim: the caller vouches for it.

A claim is dropped only when no run can exist under its key (a definite 4xx, or a run that failed at once),
so the next identical start gets a fresh key; any other failure keeps it, so a retry replays.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from mogplex_mcp.api.client import MogplexClient
from mogplex_mcp.api.errors import ApiStatusError, IdempotencyConflictError, MogplexError, RateLimitedError
from mogplex_mcp.api.models import StartedRun, StartRunRequest
from mogplex_mcp.runs.store import KeyClaim, StartClaims


@dataclass(frozen=True)
class StartedOnce:
    """What the upstream answered, and the claim whose key was sent (None: the caller's own key)."""

    started: StartedRun
    claim: KeyClaim | None


@dataclass(frozen=True)
class StartRequest:
    """One start: its body, who asks (token fingerprint), the body's fingerprint, and the caller's own key."""

    request: StartRunRequest
    fingerprint: str
    request_hash: str
    explicit_key: str | None = None


async def start_once(
    claims: StartClaims,
    start: StartRequest,
    window: Callable[[], AbstractAsyncContextManager[float]],
    client: Callable[[], MogplexClient],
) -> StartedOnce:
    """Claim, send, record. `window()` bounds the upstream call and yields its deadline; `client()` sends.

    Raises what `claims.claim_key` raises when no key can be vouched for (nothing is sent then), and
    whatever `window` makes of the client's errors.
    """
    claim = None
    if start.explicit_key is None:
        claim = await claims.claim_key(start.fingerprint, start.request_hash)
    key = start.explicit_key.strip() if start.explicit_key is not None else claim.idempotency_key if claim else None
    async with window() as deadline, client() as api:
        try:
            started = await api.start_run(start.request, idempotency_key=key, deadline=deadline)
        except MogplexError as exc:
            if claim is not None and start_definitely_failed(exc):
                await claims.forget(start.fingerprint, start.request_hash)
            raise
    if claim is not None:
        if started.run.status == "failed":  # a failed start is never worth replaying
            await claims.forget(start.fingerprint, start.request_hash)
        else:
            await claims.record_started(start.fingerprint, start.request_hash, started.run.run_id)
    return StartedOnce(started, claim)


def start_definitely_failed(exc: MogplexError) -> bool:
    """A 4xx (other than 409 and 429) means no run exists under the key: the next try may use a new one."""
    if not isinstance(exc, ApiStatusError) or isinstance(exc, IdempotencyConflictError | RateLimitedError):
        return False
    return 400 <= exc.status < 500 and exc.status not in (408, 409)
