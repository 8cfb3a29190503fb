"""A local emulator of the Mogplex v1 runs API: the offline demo's backend and the tests' backbone.

The only package that imports starlette and uvicorn. It speaks JSON on its own and never imports the client
(`mogplex_mcp.api`), so the two sides check each other.
"""

from mogplex_mcp.emulator.app import Emulator
from mogplex_mcp.emulator.config import (
    AUTOMATION_TOKEN,
    DEMO_TOKEN,
    OTHER_USER_TOKEN,
    READ_ONLY_TOKEN,
    EmulatorConfig,
    ManualClock,
)
from mogplex_mcp.emulator.faults import FAULT_KINDS, ConnectionDropped
from mogplex_mcp.emulator.scenarios import LEAKED_TOKEN, SCENARIOS
from mogplex_mcp.emulator.server import EmulatorHandle, EmulatorThread, running_emulator
from mogplex_mcp.emulator.traffic import RequestRecord

__all__ = [
    "AUTOMATION_TOKEN",
    "DEMO_TOKEN",
    "FAULT_KINDS",
    "LEAKED_TOKEN",
    "OTHER_USER_TOKEN",
    "READ_ONLY_TOKEN",
    "SCENARIOS",
    "ConnectionDropped",
    "Emulator",
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorThread",
    "ManualClock",
    "RequestRecord",
    "running_emulator",
]
