"""Emulator settings: the config dataclass, seeded tokens and repos, and the clocks it can run on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Flavor = Literal["documented", "observed"]
FLAVORS: tuple[Flavor, ...] = ("documented", "observed")
# How runs spell their activity: `classic` as today's service does; `newer` as later service code does
# (tool_started/tool_finished with a toolCallId, the agent's words as `assistant_delta` logs, harness `mogplex`).
EventStyle = Literal["classic", "newer"]
EVENT_STYLES: tuple[EventStyle, ...] = ("classic", "newer")

# Constant so docs, demos and MCP host configs can name them; they only ever open this emulator.
DEMO_TOKEN = "mog_DemoToken4Emulator7xKq2V"  # noqa: S105 - a public, emulator-only token
READ_ONLY_TOKEN = "mog_ReadOnly4Emulator9pLm8Rw"  # noqa: S105 - a public, emulator-only token
OTHER_USER_TOKEN = "mog_OtherUser4Emulator5nWj3T"  # noqa: S105 - a public, emulator-only token
# A key limited to automations (a team setting): POST /runs answers 403 AUTOMATION_REQUIRED.
AUTOMATION_TOKEN = "mog_Automation4Emulator3hQz6"  # noqa: S105 - a public, emulator-only token

DEMO_USER = "demo-user"  # the owner of every token `owners` does not name
OTHER_USER = "other-user"

DEMO_INSTALLATION_ID = 4242001


def default_tokens() -> dict[str, frozenset[str]]:
    """The demo user's read+write, read-only and automation-only tokens, and another user's read+write token."""
    return {
        DEMO_TOKEN: frozenset({"read", "write"}),
        READ_ONLY_TOKEN: frozenset({"read"}),
        OTHER_USER_TOKEN: frozenset({"read", "write"}),
        AUTOMATION_TOKEN: frozenset({"read", "write"}),
    }


def default_owners() -> dict[str, str]:
    """Token -> user id: the other user's token; every token not named here belongs to the demo user."""
    return {OTHER_USER_TOKEN: OTHER_USER}


def default_repos() -> list[dict[str, Any]]:
    """The demo user's repos, snake_case as GET /repos answers them."""
    return [
        {
            "id": "8f3a2b1c-1234-4abc-9def-1234567890ab",
            "full_name": "acme/api",
            "installation_id": DEMO_INSTALLATION_ID,
            "default_branch": "main",
            "root_directory": None,
        },
        {
            "id": "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6",
            "full_name": "acme/web",
            "installation_id": DEMO_INSTALLATION_ID,
            "default_branch": "main",
            "root_directory": "apps/web",
        },
        {
            "id": "c0ffee00-7e57-4b1d-8a2c-0123456789ab",
            "full_name": "acme/infra",
            "installation_id": DEMO_INSTALLATION_ID,
            "default_branch": None,
            "root_directory": None,
        },
        {
            "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
            "full_name": "acme/docs",
            "installation_id": DEMO_INSTALLATION_ID,
            "default_branch": "trunk",
            "root_directory": None,
        },
    ]


@dataclass
class EmulatorConfig:
    """Everything that shapes one emulator: flavour, time, tokens, repos, limits and caps."""

    flavor: Flavor = "documented"
    speed: float = 1.0  # simulated seconds per real second, for the default clock only
    seed: int = 0  # same seed and same requests: same ids and events
    tokens: dict[str, frozenset[str]] = field(default_factory=default_tokens)
    owners: dict[str, str] = field(default_factory=default_owners)  # token -> user id; missing: DEMO_USER
    repos: list[dict[str, Any]] = field(default_factory=default_repos)
    rate_limit_per_minute: int = 60
    start_limits: tuple[int, int, int] = (10, 30, 150)
    default_scenario: str = "success"
    max_runs: int = 1000
    max_events_per_run: int = 2000
    long_run_events: int = 500
    event_style: EventStyle = "classic"
    automation_only: frozenset[str] = frozenset({AUTOMATION_TOKEN})  # tokens that may only run automations

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"EmulatorConfig.flavor must be one of {FLAVORS}, not {self.flavor!r}")
        if self.event_style not in EVENT_STYLES:
            raise ValueError(f"EmulatorConfig.event_style must be one of {EVENT_STYLES}, not {self.event_style!r}")
        if not self.speed > 0:
            raise ValueError(f"EmulatorConfig.speed must be > 0, not {self.speed!r}")
        if self.max_runs < 1 or self.max_events_per_run < 20:
            raise ValueError("EmulatorConfig.max_runs must be >= 1 and max_events_per_run >= 20")
        if len(self.start_limits) != 3 or any(limit < 0 for limit in self.start_limits):
            raise ValueError("EmulatorConfig.start_limits must be three counts (per minute, hour, day), 0 = off")
        if any(not isinstance(owner, str) or not owner for owner in self.owners.values()):
            raise ValueError("EmulatorConfig.owners must map tokens to non-empty user ids")

    def owner_of(self, token: str) -> str:
        """The user a token belongs to: runs and Idempotency-Keys are scoped by it."""
        return self.owners.get(token, DEMO_USER)


class ManualClock:
    """A clock that only moves when told to: `now()` in seconds, `advance(seconds)`; also callable."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a ManualClock cannot go backwards")
        self._now += seconds

    def __call__(self) -> float:
        return self._now


def scaled_monotonic(speed: float) -> Callable[[], float]:
    """Simulated seconds since this call: the monotonic clock times `speed`."""
    origin = time.monotonic()

    def now() -> float:
        return (time.monotonic() - origin) * speed

    return now
