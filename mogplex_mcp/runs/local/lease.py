"""`FollowLease` in memory: leases shared by the holders of one process (one table per process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LocalLeaseTable:
    """Who holds which lease until when; shared by every `LocalFollowLease` of the process."""

    clock: Callable[[], float] = time.monotonic
    held: dict[str, tuple[str, float]] = field(default_factory=dict)

    def holder_of(self, name: str) -> str | None:
        entry = self.held.get(name)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.held[name]
            return None
        return entry[0]


class LocalFollowLease:
    """One holder's view of a `LocalLeaseTable`; a lease lasts `lease_seconds` unless renewed."""

    def __init__(self, table: LocalLeaseTable, holder: str, lease_seconds: float) -> None:
        self._table = table
        self.holder = holder
        self.lease_seconds = lease_seconds

    async def acquire(self, name: str) -> bool:
        current = self._table.holder_of(name)
        if current is not None and current != self.holder:
            return False
        self._table.held[name] = (self.holder, self._table.clock() + self.lease_seconds)
        return True

    async def renew(self, name: str) -> bool:
        if self._table.holder_of(name) != self.holder:
            return False
        self._table.held[name] = (self.holder, self._table.clock() + self.lease_seconds)
        return True

    async def release(self, name: str) -> bool:
        if self._table.holder_of(name) != self.holder:
            return False
        del self._table.held[name]
        return True
