"""Where our start-up time goes, phase by phase, in a fresh process: `python -m bench.startup_probe`.

Prints one JSON object of milliseconds: importing the SDK (the floor every server pays), importing our
server, `create_server` (registering tools, resources and prompts), and the two things the lifespan does
before the first message is read (the HTTP pool, the journal).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round((now - mark) * 1000, 2)
        mark = now

    import mcp.server.mcpserver  # noqa: F401 - the SDK floor, timed on its own

    lap("import the SDK (mcp.server.mcpserver)")
    from mogplex_mcp import cli  # noqa: F401 - the entry point's own imports

    lap("import mogplex_mcp.cli")
    from mogplex_mcp.server.app import create_server

    lap("import mogplex_mcp.server.app (our modules)")
    from mogplex_mcp.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(token="mog_BenchProbe00000000000000", state_dir=Path(tmp))
        create_server(settings)
        lap("create_server (tool/resource/prompt registration)")
        from mogplex_mcp.api.client import make_http_client

        make_http_client(settings)
        lap("lifespan: make_http_client (imports httpcore2 + h11, builds an SSL context)")
        from mogplex_mcp.runs.local.journal import StartJournal

        StartJournal.in_state_dir(settings.state_dir).close()
        lap("lifespan: open the SQLite journal")
    print(json.dumps(phases))


if __name__ == "__main__":
    main()
