"""The request log: every API request the emulator received, so tests can count upstream calls."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

MAX_RECORDS = 50_000


@dataclass
class RequestRecord:
    """One request: never the token itself, only whether one was sent. `status` is None if unanswered."""

    method: str
    path: str
    query: str
    has_auth: bool
    idempotency_key: str | None
    status: int | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Records oldest first; the oldest half is dropped when MAX_RECORDS is reached."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()

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
