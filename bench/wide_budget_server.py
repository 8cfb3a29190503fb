"""The real server over stdio with a wider follower budget: `python -m bench.wide_budget_server`.

Exactly what `mogplex-mcp serve` runs (settings from the environment, `create_server`, stdio), except that
followers may send far more than 40 requests a minute. The memory benchmark needs that to follow 1,000 runs
in seconds rather than 25 minutes; the pacer itself holds no per-run state, so memory is unaffected.
"""

from __future__ import annotations

import anyio

from mogplex_mcp.cli import configure_logging
from mogplex_mcp.config import Settings
from mogplex_mcp.runs.follower import FollowSettings
from mogplex_mcp.server.app import create_server

REQUESTS_PER_MINUTE = 1_000_000


def main() -> None:
    configure_logging(None)
    server = create_server(Settings.from_env(), follow=FollowSettings(requests_per_minute=REQUESTS_PER_MINUTE))
    anyio.run(server.run_stdio_async)


if __name__ == "__main__":
    main()
