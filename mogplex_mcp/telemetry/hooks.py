"""The hooks instrumented code calls: one `Recorder`, a no-op until the server installs a real one.

Like `logging`, this is process-wide on purpose: the journal, the Redis store and the upstream client sit
several layers below the server and should not need a metrics object threaded through every constructor.
Every argument is a bounded label value (a tool name, a route template, an outcome word): never a token,
a fingerprint, a run id or any text a user wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Recorder:
    """What the process reports. Every method does nothing here; `telemetry.metrics` counts them."""

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call ended (`outcome`: ok, error, rejected, crashed or cancelled)."""

    def upstream_response(
        self, method: str, route: str, status: str, seconds: float, retry_after: float | None
    ) -> None:
        """An upstream request ended: `status` is the HTTP status, or "error" (no answer) or "cancelled"."""

    def upstream_token_refused(self) -> None:
        """A call was refused locally: upstream answered 401 to its token moments ago (nothing was sent)."""

    def upstream_oversized(self, route: str) -> None:
        """An upstream answer passed the size cap and was not read further."""

    def journal_fallback(self, operation: str) -> None:
        """The journal file could not be used, so `operation` fell back to this process's memory."""

    def redis_command(self, operation: str, seconds: float, ok: bool) -> None:
        """A Redis operation (one of the store's fixed names) finished or failed."""

    def oauth_sign_in(self, outcome: str) -> None:
        """A sign-in form was submitted at the OAuth front door (`outcome`: ok, invalid, denied, failed)."""

    def oauth_refresh(self, outcome: str) -> None:
        """An OAuth token refresh ended (`outcome`: ok, invalid, failed)."""


_NOTHING = Recorder()
_current: Recorder = _NOTHING


def recorder() -> Recorder:
    """The installed recorder (a no-op one unless metrics are on)."""
    return _current


def install(new: Recorder | None) -> Recorder:
    """Make `new` the process's recorder (None: back to the no-op one); returns the one it replaced."""
    global _current
    previous = _current
    _current = new if new is not None else _NOTHING
    return previous


@contextmanager
def installed(new: Recorder) -> Iterator[Recorder]:
    """`new` is the recorder while the block runs; the previous one comes back after."""
    previous = install(new)
    try:
        yield new
    finally:
        install(previous)
