"""The gateway's limits as an operator sets them, and the eviction order they lead to."""

from __future__ import annotations

import pytest

from mogplex_mcp.cli import build_parser
from mogplex_mcp.server.transport.connections import FD_RESERVE, connection_cap
from mogplex_mcp.server.transport.sessions import SessionLimitError, SessionLimits, SessionRegistry


def test_limit_flags_parse_and_refuse_nonsense() -> None:
    flags = "serve --transport http --max-sessions-per-token 4 --session-idle-timeout 2.5 --header-timeout 3"
    args = build_parser("serve").parse_args(flags.split())
    assert (args.max_sessions_per_token, args.session_idle_timeout, args.header_timeout) == (4, 2.5, 3.0)
    assert (args.max_sessions, args.max_connections) == (1000, 1000)  # the documented defaults
    for bad in (["--max-sessions", "0"], ["--max-connections", "-5"], ["--header-timeout", "nan"]):
        with pytest.raises(SystemExit):
            build_parser("serve").parse_args(["serve", *bad])


def test_the_connection_cap_fits_below_the_open_file_limit() -> None:
    assert connection_cap(1000, 65_536) == 1000
    assert connection_cap(1000, 1024) == 1024 - FD_RESERVE


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_full_server_evicts_an_unused_session_of_the_biggest_holder_first() -> None:
    registry = SessionRegistry(SessionLimits(per_token=10, total=4), clock=Clock())
    worker = registry.opened("w", "worker", b"h")
    for _ in range(3):  # a session that is really used
        registry.begin(worker)
        registry.end(worker)
    for n, owner in enumerate(["flood", "flood", "lone"]):
        registry.reserve(owner)
        registry.opened(f"s{n}", owner, b"h")
        registry.release(owner)
    [victim] = registry.reserve("newcomer")
    assert (victim.session_id, victim.fingerprint) == ("s0", "flood")
    assert registry.get("w") is worker


def test_busy_sessions_are_never_evicted() -> None:
    registry = SessionRegistry(SessionLimits(per_token=1, total=10))
    registry.begin(registry.opened("busy", "me", b"h"))
    with pytest.raises(SessionLimitError) as refused:
        registry.reserve("me")
    assert refused.value.status == 429
    assert registry.get("busy") is not None
