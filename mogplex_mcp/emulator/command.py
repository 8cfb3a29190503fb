"""`mogplex-mcp emulator`: serve the emulator on loopback and print how to reach it (stdout is not MCP here)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from types import FrameType

from mogplex_mcp.emulator.app import Emulator
from mogplex_mcp.emulator.config import DEMO_TOKEN, EVENT_STYLES, FLAVORS, READ_ONLY_TOKEN, EmulatorConfig
from mogplex_mcp.emulator.scenarios import SCENARIOS
from mogplex_mcp.emulator.server import base_url_of, bind_loopback, make_server

DEFAULT_PORT = 8787


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="documented",
        help="documented: the public docs' shapes; observed: production's (default: %(default)s)",
    )
    parser.add_argument(
        "--event-style",
        choices=EVENT_STYLES,
        default="classic",
        help="newer: tool_started/tool_finished, assistant_delta logs, harness mogplex (default: %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="simulated-time multiplier; 10 runs a ~14 s run in ~1.4 s (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and event contents (default: %(default)s)")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="success",
        help="scenario of runs whose prompt has no [scenario:NAME] marker (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=60,
        metavar="N",
        help="requests per minute per token; 0 disables (default: %(default)s)",
    )


def banner(base_url: str, config: EmulatorConfig) -> str:
    """What the command prints: where it listens, the tokens, and curl lines that work as the docs' do."""
    repo_id = str(config.repos[0]["id"]) if config.repos else "<repoId>"
    auth = '-H "Authorization: Bearer $MOGPLEX_TOKEN"'
    runs = "$MOGPLEX_BASE_URL/api/v1/mogplex/runs"
    body = f'{{"repoId": "{repo_id}", "prompt": "Add a health check endpoint", "createBranch": true}}'
    return "\n".join(
        [
            f"Mogplex API emulator ({config.flavor} flavour, speed {config.speed:g}, seed {config.seed})",
            f"  base URL:         {base_url}",
            f"  token:            {DEMO_TOKEN}   (scopes read, write)",
            f"  read-only token:  {READ_ONLY_TOKEN}",
            "",
            "Try it:",
            f"  export MOGPLEX_BASE_URL={base_url}",
            f"  export MOGPLEX_TOKEN={DEMO_TOKEN}",
            f'  curl -sS {auth} "$MOGPLEX_BASE_URL/api/v1/mogplex/repos"',
            f'  curl -sS -X POST {auth} -H "Content-Type: application/json" -H "Idempotency-Key: try-1" \\\n'
            f"       -d '{body}' \"{runs}\"",
            f'  curl -sS {auth} "{runs}/<runId>"',
            f'  curl -sS {auth} "{runs}/<runId>/events?limit=50"',
            f'  curl -sS -X POST {auth} "{runs}/<runId>/cancel"',
            "",
            f"Scenarios: put [scenario:NAME] in a prompt — {', '.join(SCENARIOS)}.",
            "Press Ctrl-C to stop.",
        ]
    )


def run(args: argparse.Namespace) -> int:
    config = EmulatorConfig(
        flavor=args.flavor,
        event_style=args.event_style,
        speed=args.speed,
        seed=args.seed,
        default_scenario=args.scenario,
        rate_limit_per_minute=max(0, args.rate_limit),
    )
    emulator = Emulator(config)
    try:
        sock = bind_loopback(args.host, args.port)
    except OSError as exc:
        print(
            f"mogplex-mcp emulator: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pass --port 0 to use a free port",
            file=sys.stderr,
        )
        return 1
    print(banner(base_url_of(sock), config), flush=True)
    server = make_server(emulator)

    def stop(signum: int, frame: FrameType | None) -> None:
        emulator.closing.set()
        if server.should_exit:  # a second Ctrl-C: stop waiting for open connections
            server.force_exit = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(server.serve([sock]))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return 0
