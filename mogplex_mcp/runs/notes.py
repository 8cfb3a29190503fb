"""What this server learned about a run that a GET does not return: its rootDirectory, a cancel it asked for."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

NOTES_MAX = 5_000


@dataclass(frozen=True)
class RunNotes:
    """Per-run facts the API's run view lacks: GET /runs/{id} has no rootDirectory, no "cancel was asked"."""

    root_directory: str | None = None
    cancel_requested: bool = False


class RunNotebook:
    """Notes per (token fingerprint, run id), least recently used dropped first beyond `limit`."""

    def __init__(self, limit: int = NOTES_MAX) -> None:
        self._limit = limit
        self._notes: OrderedDict[tuple[str, str], RunNotes] = OrderedDict()

    def get(self, fingerprint: str, run_id: str) -> RunNotes:
        return self._notes.get((fingerprint, run_id), RunNotes())

    def note_root_directory(self, fingerprint: str, run_id: str, root_directory: str | None) -> None:
        if root_directory:
            notes = self.get(fingerprint, run_id)
            self._put(fingerprint, run_id, replace(notes, root_directory=root_directory))

    def note_cancel_requested(self, fingerprint: str, run_id: str) -> None:
        self._put(fingerprint, run_id, replace(self.get(fingerprint, run_id), cancel_requested=True))

    def _put(self, fingerprint: str, run_id: str, notes: RunNotes) -> None:
        key = (fingerprint, run_id)
        self._notes[key] = notes
        self._notes.move_to_end(key)
        while len(self._notes) > self._limit:
            self._notes.popitem(last=False)
