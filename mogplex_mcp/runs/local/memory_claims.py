"""In-process start claims: the journal's fallback while its file cannot be written, and per-request locks.

A claim made while the file is failing (disk full, locked by another process, read-only) lives here, so a
retry of the same start in this process reuses its key instead of minting a fresh one. It is consulted
before the file, so the key is reused after the file recovers too, until the de-duplication window ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

ClaimId = tuple[str, str]  # (token fingerprint, request hash)

MEMORY_CLAIMS_MAX = 10_000


@dataclass(frozen=True)
class MemoryClaim:
    """A key this process handed out; `persisted` once the file holds it too."""

    idempotency_key: str
    created_at: float
    run_id: str | None = None
    persisted: bool = False


class ClaimTable:
    """Claims by (fingerprint, request hash), thread-safe; expired ones are dropped as new ones arrive."""

    def __init__(self, window_seconds: float, max_claims: int = MEMORY_CLAIMS_MAX) -> None:
        self._window = window_seconds
        self._max = max(1, max_claims)
        self._lock = threading.Lock()
        self._claims: dict[ClaimId, MemoryClaim] = {}
        self._forgotten: dict[ClaimId, float] = {}  # when a claim was dropped: older file rows are stale
        self._serial: dict[ClaimId, tuple[threading.Lock, int]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)

    def live(self, claim_id: ClaimId, now: float) -> MemoryClaim | None:
        """The claim for this request made within the window, if any."""
        with self._lock:
            claim = self._claims.get(claim_id)
            if claim is None or now - claim.created_at >= self._window:
                return None
            return claim

    def put(self, claim_id: ClaimId, claim: MemoryClaim, now: float) -> None:
        with self._lock:
            if len(self._claims) >= self._max:
                self._drop_expired(now)
            if len(self._claims) >= self._max:  # all live: the oldest goes (dicts keep insertion order)
                del self._claims[next(iter(self._claims))]
            self._claims[claim_id] = claim

    def attach_run(self, claim_id: ClaimId, run_id: str) -> None:
        with self._lock:
            if (claim := self._claims.get(claim_id)) is not None:
                self._claims[claim_id] = replace(claim, run_id=run_id)

    def drop(self, claim_id: ClaimId, now: float) -> None:
        """Forget a claim; a copy the file could not drop counts as gone too (`is_stale`)."""
        with self._lock:
            self._claims.pop(claim_id, None)
            if len(self._forgotten) >= self._max:
                self._forgotten = {cid: at for cid, at in self._forgotten.items() if now - at < self._window}
            self._forgotten[claim_id] = now

    def is_stale(self, claim_id: ClaimId, created_at: float) -> bool:
        """Whether a claim read from the file was forgotten here after it was made."""
        with self._lock:
            forgotten = self._forgotten.get(claim_id)
            return forgotten is not None and created_at <= forgotten

    def unpersisted(self, now: float) -> list[tuple[ClaimId, MemoryClaim]]:
        """Live claims the file does not hold yet (to write through once it works again)."""
        with self._lock:
            return [
                (cid, c) for cid, c in self._claims.items() if not c.persisted and now - c.created_at < self._window
            ]

    def mark_persisted(self, claim_ids: list[ClaimId]) -> None:
        with self._lock:
            for claim_id in claim_ids:
                if (claim := self._claims.get(claim_id)) is not None:
                    self._claims[claim_id] = replace(claim, persisted=True)

    @contextmanager
    def serialized(self, claim_id: ClaimId) -> Iterator[None]:
        """Identical starts in this process claim one after another; different ones do not wait."""
        with self._lock:
            lock, users = self._serial.get(claim_id, (threading.Lock(), 0))
            self._serial[claim_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._serial[claim_id]
                if users <= 1:
                    del self._serial[claim_id]
                else:
                    self._serial[claim_id] = (lock, users - 1)

    def _drop_expired(self, now: float) -> None:
        for claim_id in [cid for cid, c in self._claims.items() if now - c.created_at >= self._window]:
            del self._claims[claim_id]
