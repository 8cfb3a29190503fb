"""Test-wide settings: anyio on asyncio, no network but loopback."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
