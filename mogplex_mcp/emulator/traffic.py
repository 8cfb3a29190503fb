"""The request log: every API request the emulator received, so tests can count upstream calls."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

MAX_RECORDS = 50_000


def token_tag(token: str) -> str:
    """Which token sent a request, without the token: the first 12 hex characters of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@dataclass
class RequestRecord:
    """One request: never the token itself, only whether one was sent and its `token_tag`.

    `status` is None if unanswered; `body_bytes` counts the answer's body bytes handed to the server;
    `traceparent` is the W3C trace context the request carried, if any (tests check it was propagated).
    """

    method: str
    path: str
    query: str
    has_auth: bool
    idempotency_key: str | None
    status: int | None = None
    fault: str | None = None
    token_tag: str | None = None
    body_bytes: int = 0
    traceparent: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Records oldest first; the oldest half is dropped when MAX_RECORDS is reached."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._in_flight: dict[str | None, int] = {}
        self._peaks: dict[str | None, int] = {}

    @contextmanager
    def in_flight(self, tag: str | None) -> Iterator[None]:
        """Count a request as in flight for its token tag while the block runs (for `peak`)."""
        with self._lock:
            now = self._in_flight.get(tag, 0) + 1
            self._in_flight[tag] = now
            self._peaks[tag] = max(self._peaks.get(tag, 0), now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[tag] -= 1

    def peak(self, tag: str | None) -> int:
        """The most requests of one token tag (None: without a bearer) ever in flight at once."""
        with self._lock:
            return self._peaks.get(tag, 0)

    def peaks(self) -> dict[str, int]:
        with self._lock:
            return {tag or "": peak for tag, peak in self._peaks.items()}

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            if len(self.records) >= MAX_RECORDS:
                del self.records[: MAX_RECORDS // 2]
            self.records.append(record)

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for record in self.records
                if (method is None or record.method == method.upper())
                and (path_prefix is None or record.path.startswith(path_prefix))
            )

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self._peaks = {tag: count for tag, count in self._in_flight.items() if count}
