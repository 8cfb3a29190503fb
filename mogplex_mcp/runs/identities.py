"""Which tokens upstream accepted, kept beyond this process: the gate's verified set <-> a `VerifiedTokens` store.

At start the gate learns the acceptances recorded before (this state dir's, or every replica's in Redis);
while serving, each acceptance (at most once a minute per token) and each revocation (a 401 for a token that
was verified) is written through in the background. With a shared store the gate also reads the other
replicas' acceptances every `REFRESH_SECONDS`, and asks it about a token not known here (api/limits.py
`known_verified`, at most every 30 s per token). Store failures are logged and skipped: the queue of
not-yet-accepted tokens is then merely what it would be without the store.
"""

from __future__ import annotations

import logging
import time

import anyio
from anyio.abc import TaskGroup

from mogplex_mcp.api.limits import UpstreamGate
from mogplex_mcp.runs.store import StoreUnavailableError, VerifiedTokens

logger = logging.getLogger("mogplex_mcp.runs")

REFRESH_SECONDS = 30.0
# A store that does not answer this fast is skipped: start-up and acceptances never wait on it longer.
STORE_WAIT_SECONDS = 1.0
# Writes waiting for the store at most; more are dropped (an acceptance is recorded again a minute later).
MAX_PENDING_WRITES = 256


async def remember_verified(gate: UpstreamGate, store: VerifiedTokens, tg: TaskGroup, *, shared: bool) -> None:
    """Load the acceptances recorded before into `gate`, then keep the store up to date (module docstring)."""
    await _load(gate, store, since=0.0)
    pending = [0]

    def write(fingerprint: str, accepted_at: float | None) -> None:
        if pending[0] >= MAX_PENDING_WRITES:
            return
        pending[0] += 1
        tg.start_soon(_write, store, fingerprint, accepted_at, pending)

    gate.on_accepted = write
    if shared:  # another replica may accept a token first: ask the store about one not known here
        gate.lookup = store.accepted_at
        tg.start_soon(_refresh, gate, store)


async def _load(gate: UpstreamGate, store: VerifiedTokens, since: float) -> None:
    with anyio.move_on_after(STORE_WAIT_SECONDS):
        try:
            gate.load(await store.recent(since))
        except StoreUnavailableError as exc:
            logger.info("verified tokens not loaded: %s", exc)


async def _write(store: VerifiedTokens, fingerprint: str, accepted_at: float | None, pending: list[int]) -> None:
    try:
        with anyio.move_on_after(STORE_WAIT_SECONDS):
            await store.record(fingerprint, accepted_at)
    except StoreUnavailableError as exc:
        logger.info("verified token not recorded: %s", exc)
    finally:
        pending[0] -= 1


async def _refresh(gate: UpstreamGate, store: VerifiedTokens) -> None:
    last = time.time()
    while True:
        await anyio.sleep(REFRESH_SECONDS)
        now = time.time()
        await _load(gate, store, since=last - 5.0)
        last = now
