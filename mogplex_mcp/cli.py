"""The command line: parse, load settings, dispatch (serve | emulator | demo | doctor | oauth grants).

The composition root. Heavy modules are imported only by the command that needs them, so the stdio server
(what hosts launch, often) starts without loading the emulator, uvicorn or the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from mogplex_mcp import __version__
from mogplex_mcp.cli_grants import configure_grants
from mogplex_mcp.cli_limits import (
    REDIS_BYTE_FLAGS,
    REDIS_FLAGS,
    configure_gateway_limits,
    configure_metrics,
    configure_redis_limits,
    positive,
)
from mogplex_mcp.cli_oauth import configure_oauth, oauth_options
from mogplex_mcp.cli_ops import configure_ops, ops_options
from mogplex_mcp.config import ConfigError, Settings

COMMANDS = ("serve", "emulator", "demo", "doctor", "oauth")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_ENV = "MOGPLEX_LOG_LEVEL"
LOG_FORMAT_ENV = "MOGPLEX_LOG_FORMAT"
logger = logging.getLogger("mogplex_mcp")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. The emulator's own flags are configured only when `command` is "emulator" (lazy import)."""
    parser = argparse.ArgumentParser(
        prog="mogplex-mcp",
        description="MCP server that starts and supervises Mogplex coding-agent runs. "
        "With no command, serves MCP over stdio (what MCP hosts launch).",
    )
    parser.add_argument("--version", action="version", version=f"mogplex-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve MCP over stdio (default) or streamable HTTP")
    configure_serve(serve)
    serve.set_defaults(handler=_run_serve)

    demo = commands.add_parser(
        "demo", help="offline demo: emulator + the real server over stdio + an MCP client, with a transcript"
    )
    demo.add_argument("--speed", type=float, default=None, help="emulator speed (default: about 15 s in total)")
    demo.set_defaults(handler=_run_demo)

    doctor = commands.add_parser(
        "doctor", help="check token, base URL and access; print ready-to-paste configs for MCP hosts"
    )
    doctor.add_argument(
        "--base-url", help="Mogplex base URL to check (env MOGPLEX_BASE_URL; default: https://mogplex.com)"
    )
    doctor.add_argument("--no-network", action="store_true", help="skip the reachability and token checks")
    doctor.set_defaults(handler=_run_doctor)

    configure_grants(commands)  # `oauth grants list|revoke`: cli_grants.py

    emulator = commands.add_parser(
        "emulator", help="run a local emulator of the Mogplex v1 API (offline testing, no account)"
    )
    if command == "emulator":
        from mogplex_mcp.emulator import command as emulator_command

        emulator_command.configure_parser(emulator)
        emulator.set_defaults(handler=emulator_command.run)
    return parser


def configure_serve(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help="hide start_run, cancel_run and continue_run (env MOGPLEX_READ_ONLY; default: off)",
    )
    serve.add_argument(
        "--emulator",
        action="store_true",
        help="serve against an embedded Mogplex emulator on a free loopback port (offline, no account needed)",
    )
    serve.add_argument("--base-url", help="Mogplex base URL (env MOGPLEX_BASE_URL; default: https://mogplex.com)")
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="log level on stderr (env MOGPLEX_LOG_LEVEL; default: warning)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="stderr log lines as text or one JSON object each (env MOGPLEX_LOG_FORMAT; default: text)",
    )
    serve.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio: an MCP host launches this process and talks over its stdin/stdout; http: streamable HTTP on"
        " --host/--port, one server shared by many clients and users (docs/http.md) (default: %(default)s)",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="share start de-duplication and request budgets among replicas in Redis; needs the redis extra;"
        " prefer the env var for a password: flags show in `ps` (env MOGPLEX_REDIS_URL; default: off)",
    )
    configure_redis_limits(serve.add_argument_group("Redis budgets (--redis-url; docs/scale.md)"))
    http = serve.add_argument_group("streamable HTTP (--transport http)")
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    http.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: %(default)s)")
    http.add_argument(
        "--stateless",
        action="store_true",
        help="no MCP sessions: any replica can answer any request (no server-initiated notifications)",
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="Host header to accept (repeatable); required for non-loopback binds; '*' disables the check",
    )
    http.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin to accept, e.g. https://app.example.com (repeatable)",
    )
    configure_gateway_limits(serve.add_argument_group("shared-server limits (--transport http; docs/http.md)"))
    configure_oauth(
        serve.add_argument_group("OAuth sign-in for remote connectors (--transport http; docs/oauth.md)"), positive
    )
    configure_metrics(serve.add_argument_group("metrics (--transport http; docs/operations.md)"))
    configure_ops(serve.add_argument_group("probes and drain (--transport http; docs/scale.md#probes-and-drain)"))


def configure_logging(level: str | None, log_format: str | None = None) -> str:
    """Logs go to stderr: stdout belongs to the MCP protocol on stdio. Returns the format used."""
    from mogplex_mcp.telemetry.logs import LOG_FORMATS, formatter

    name = (level or os.environ.get(LOG_LEVEL_ENV) or "warning").upper()
    if name.lower() not in LOG_LEVELS:
        name = "WARNING"
    shape = (log_format or os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if shape not in LOG_FORMATS:
        raise ConfigError(f"{LOG_FORMAT_ENV} must be one of {', '.join(LOG_FORMATS)}, got {shape[:20]!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(shape))
    logging.basicConfig(level=name, handlers=[handler], force=True)
    if name != "DEBUG":  # one line per upstream request is noise unless debugging
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return shape


def _run_serve(args: argparse.Namespace) -> int:
    args.log_format = configure_logging(args.log_level, args.log_format)
    if args.metrics_port is not None and args.transport != "http":
        raise ConfigError("--metrics-port needs --transport http (a stdio server has no port to serve them on)")
    from mogplex_mcp.telemetry import tracing

    if traces := tracing.configure():
        logger.warning("%s", traces)
    redis_budgets = {dest: getattr(args, dest, None) for dest in (*REDIS_FLAGS, *REDIS_BYTE_FLAGS)}
    settings = Settings.from_env(
        base_url=args.base_url, read_only=args.read_only, redis_url=args.redis_url, **redis_budgets
    )
    if settings.redis_url:
        from mogplex_mcp.runs.backends import shared_store_problem

        if problem := shared_store_problem(settings):
            print(f"mogplex-mcp: cannot start: {problem}", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as stack:
        if args.emulator:
            settings = _with_embedded_emulator(settings, stack)
        try:
            if args.transport == "http":
                return _serve_http(settings, args)
            return _serve_stdio(settings)
        except KeyboardInterrupt:
            return 130


def _with_embedded_emulator(settings: Settings, stack: contextlib.ExitStack) -> Settings:
    """Start an emulator in a background thread; point the settings (token, URL, fresh state) at it."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from mogplex_mcp.emulator import EmulatorThread

    handle = stack.enter_context(EmulatorThread())
    # A throwaway state dir: the emulator's runs vanish with it, so they must not linger in resources/list.
    state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mogplex-mcp-emulator-")))
    logger.warning("serving against the embedded emulator at %s (demo token, no account)", handle.base_url)
    return dataclasses.replace(settings, base_url=handle.base_url, token=handle.token, state_dir=state_dir)


def _serve_stdio(settings: Settings) -> int:
    import anyio

    from mogplex_mcp.server.app import create_server

    if not settings.token:
        logger.warning("no MOGPLEX_TOKEN set: tools will answer with how to configure one")
    if sys.stdin.isatty():  # a person, not a host: say what is going on instead of waiting silently
        print(
            "mogplex-mcp is serving MCP over stdio, for an MCP host to launch (Ctrl-C to stop).\n"
            "Try `mogplex-mcp demo`, `mogplex-mcp doctor` or `mogplex-mcp --help`.",
            file=sys.stderr,
        )
    server = create_server(settings)
    anyio.run(server.run_stdio_async)
    return 0


def _serve_http(settings: Settings, args: argparse.Namespace) -> int:
    import anyio

    from mogplex_mcp.server.transport.http import HttpOptions, build_http_app, local_only, serve_http

    options = HttpOptions(
        host=args.host,
        port=args.port,
        stateless=args.stateless,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        max_sessions_per_token=args.max_sessions_per_token,
        max_sessions=args.max_sessions,
        session_idle_minutes=args.session_idle_timeout,
        max_connections=args.max_connections,
        header_timeout_seconds=args.header_timeout,
        body_timeout_seconds=args.body_timeout,
        max_body_bytes=args.max_body_bytes,
        max_body_bytes_per_client=args.max_body_bytes_per_client,
        max_body_bytes_in_flight=args.max_body_bytes_in_flight,
        max_unverified_sessions_per_client=args.max_unverified_sessions_per_client,
        max_unverified_sessions=args.max_unverified_sessions,
        max_unverified_requests_per_client=args.max_unverified_requests_per_client,
        max_unverified_requests=args.max_unverified_requests,
        graceful_shutdown_seconds=args.grace_period,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        oauth=oauth_options(args),
        **ops_options(args),
    )
    if settings.token and not local_only(options):
        logger.warning(
            "MOGPLEX_TOKEN is not used over HTTP unless the server is local-only (loopback bind, no --allowed-host):"
            " each request must send its own Authorization: Bearer"
        )
    app = build_http_app(settings, options)
    json_logs = args.log_format == "json"
    level = (args.log_level or os.environ.get(LOG_LEVEL_ENV) or "warning").lower()  # INFO turns the access log on
    level = level if level in LOG_LEVELS else "warning"
    anyio.run(lambda: serve_http(app, options, log_level=level, json_logs=json_logs))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from mogplex_mcp.demo import main as demo_main

    return demo_main(speed=args.speed)


def _run_doctor(args: argparse.Namespace) -> int:
    from mogplex_mcp.doctor import main as doctor_main

    return doctor_main(base_url=args.base_url, network=not args.no_network)


def normalize_argv(argv: list[str]) -> list[str]:
    """`mogplex-mcp` and `mogplex-mcp --read-only` mean `mogplex-mcp serve ...` (what host configs launch)."""
    if not argv:
        return ["serve"]
    first = argv[0]
    if first.startswith("-") and first not in ("-h", "--help", "--version"):
        return ["serve", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args_list = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    command = args_list[0] if args_list and args_list[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = handler(args)
    except ConfigError as exc:
        print(f"mogplex-mcp: configuration error: {exc}", file=sys.stderr)
        return 2
    return result
