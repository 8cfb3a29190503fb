"""The command line: parse, load settings, dispatch (serve | emulator | demo | doctor | oauth grants).

The composition root. Heavy modules are imported only by the command that needs them, so the stdio server
(what hosts launch, often) starts without loading the emulator, uvicorn or the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence

from mogplex_mcp import __version__
from mogplex_mcp.cli_grants import configure_grants
from mogplex_mcp.cli_oauth import configure_oauth, oauth_options
from mogplex_mcp.config import COUNT_SETTINGS, REDIS_SECONDS_SETTINGS, ConfigError, Settings

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
    doctor.add_argument("--base-url", help="Mogplex base URL to check (default: $MOGPLEX_BASE_URL or mogplex.com)")
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
        help="hide start_run, cancel_run and continue_run (env MOGPLEX_READ_ONLY)",
    )
    serve.add_argument(
        "--emulator",
        action="store_true",
        help="serve against an embedded Mogplex emulator on a free loopback port (offline, no account needed)",
    )
    serve.add_argument("--base-url", help="Mogplex base URL (env MOGPLEX_BASE_URL; default https://mogplex.com)")
    serve.add_argument(
        "--log-level", choices=LOG_LEVELS, default=None, help="log level on stderr (env MOGPLEX_LOG_LEVEL; warning)"
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="stderr log lines as text or one JSON object each (env MOGPLEX_LOG_FORMAT; text)",
    )
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="default: %(default)s")
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="share start de-duplication and request budgets among replicas in Redis (env MOGPLEX_REDIS_URL;"
        " prefer the env var for a password: flags show in `ps`); needs the redis extra",
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
        serve.add_argument_group("OAuth sign-in for remote connectors (--transport http; docs/oauth.md)"), _positive
    )
    configure_metrics(serve.add_argument_group("metrics (--transport http; docs/operations.md)"))


def configure_metrics(group: argparse._ArgumentGroup) -> None:
    """Prometheus metrics on a port of their own: off unless asked, loopback unless told otherwise."""
    group.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics, apart from the MCP port (default: off)",
    )
    group.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the metrics port binds (default: %(default)s; MCP callers cannot reach it unless you open it)",
    )


REDIS_FLAGS = {
    "redis_timeout_seconds": ("--redis-timeout", "one Redis command, connecting included"),
    "redis_read_timeout_seconds": ("--redis-read-timeout", "a read the journal can answer instead"),
    "redis_call_budget_seconds": ("--redis-call-budget", "all Redis commands of one tool call together"),
    "redis_breaker_seconds": ("--redis-breaker", "after a timeout, Redis is not asked for this long"),
}


REDIS_BYTE_FLAGS = {
    "redis_feed_run_bytes": ("--redis-feed-run-bytes", "most bytes one run's feed holds in Redis"),
    "redis_feed_token_bytes": ("--redis-feed-token-bytes", "most feed bytes one token publishes per hour"),
}


def configure_redis_limits(group: argparse._ArgumentGroup) -> None:
    """How long Redis may take, and what run feeds may hold there; each flag also has its env var."""
    for dest, (flag, what) in REDIS_FLAGS.items():
        env = REDIS_SECONDS_SETTINGS[dest]
        default = Settings.__dataclass_fields__[dest].default
        group.add_argument(
            flag, dest=dest, type=_positive(float), default=None, metavar="SECONDS",
            help=f"{what} (env {env}; default {default:g})",
        )  # fmt: skip
    for dest, (flag, what) in REDIS_BYTE_FLAGS.items():
        env = COUNT_SETTINGS[dest]
        size: int = getattr(Settings, dest)
        group.add_argument(
            flag, dest=dest, type=_positive(int), default=None, metavar="BYTES",
            help=f"{what} (env {env}; default {size // 1024 // 1024} MB)",
        )  # fmt: skip


def configure_gateway_limits(group: argparse._ArgumentGroup) -> None:
    """The gateway's limits: sessions per token and in all, idle expiry, connections, header and body deadlines."""
    group.add_argument(
        "--max-sessions-per-token",
        type=_positive(int),
        default=32,
        metavar="N",
        help="open MCP sessions per token; more evict its oldest idle one (default: %(default)s)",
    )
    group.add_argument(
        "--max-sessions",
        type=_positive(int),
        default=1000,
        metavar="N",
        help="open MCP sessions in all; more evict an idle one, never-used first (default: %(default)s)",
    )
    group.add_argument(
        "--session-idle-timeout",
        type=_positive(float),
        default=10.0,
        metavar="MINUTES",
        help="end a session after this long without a request or open stream (default: %(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=_positive(int),
        default=1000,
        metavar="N",
        help="open HTTP connections; more displace the oldest idle one (default: %(default)s)",
    )
    group.add_argument(
        "--header-timeout",
        type=_positive(float),
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete in time (default: %(default)s)",
    )
    group.add_argument(
        "--body-timeout",
        type=_positive(float),
        default=30.0,
        metavar="SECONDS",
        help="close a connection whose request body is not complete this long after its headers (default: %(default)s)",
    )
    group.add_argument(
        "--grace-period",
        type=_positive(float),
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, drain for at most this long, then exit regardless (default: %(default)s)",
    )
    group.add_argument(
        "--max-body-bytes",
        type=_positive(int),
        default=1024 * 1024,
        metavar="BYTES",
        help="largest request body; 413 beyond (default: %(default)s, room for the longest prompt)",
    )
    group.add_argument(
        "--max-body-bytes-per-client",
        type=_positive(int),
        default=8 * 1024 * 1024,
        metavar="BYTES",
        help="request-body bytes in flight per client address; 429 beyond (default: %(default)s)",
    )
    group.add_argument(
        "--max-body-bytes-in-flight",
        type=_positive(int),
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="request-body bytes in flight in all; 503 beyond (default: %(default)s)",
    )
    for what, default, beyond in (
        ("sessions-per-client", 16, "evicts its oldest idle one, else 429"),
        ("sessions", 128, "evicts an idle one, else 503"),
        ("requests-per-client", 32, "429"),
        ("requests", 128, "503"),
    ):
        group.add_argument(
            f"--max-unverified-{what}",
            type=_positive(int),
            default=default,
            metavar="N",
            help=f"{what.replace('-', ' ')} of tokens Mogplex has not accepted yet; {beyond} (default: %(default)s)",
        )


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:  # ASCII digits: "²".isdigit() is True
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text[:20]!r}")
    return int(text)


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


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
