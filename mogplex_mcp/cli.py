"""The command line: parse, load settings, dispatch (serve | emulator | demo | doctor)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mogplex_mcp import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mogplex-mcp",
        description="MCP server that starts and supervises Mogplex coding-agent runs.",
    )
    parser.add_argument("--version", action="version", version=f"mogplex-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    emulator = commands.add_parser(
        "emulator", help="run a local emulator of the Mogplex v1 API (offline testing, no account)"
    )
    from mogplex_mcp.emulator import command as emulator_command

    emulator_command.configure_parser(emulator)
    emulator.set_defaults(handler=emulator_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    return result
