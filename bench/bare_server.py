"""The baseline: a bare `MCPServer` with one trivial tool — `python -m bench.bare_server [--http PORT]`.

It imports the SDK the way our server does and nothing else, so the difference between its numbers and
ours (start-up time, time per call) is ours. Serves stdio, or streamable HTTP on 127.0.0.1 with `--http`.
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer


def build() -> MCPServer:
    server = MCPServer("bare", log_level="WARNING")

    @server.tool()
    async def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    return server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    args = parser.parse_args()
    if args.http is None:
        build().run()
    else:
        build().run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
