"""Tests that need something outside the lock (npm clients, redis-server, chromium): find it, or say how to get it.

Off CI such a test skips with a loud reason naming the install command; under `CI=true` the same situation
fails, because `.ci/run` installs everything and a skipped test there would hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str, install: str) -> NoReturn:
    """Skip (or, under CI=true, fail) because `what` is not available; `install` says how to get it."""
    message = f"{what} is not available here: install it with `{install}` (.ci/run installs it)"
    if IN_CI:
        pytest.fail(f"CI=true, so this is a failure, not a skip: {message}", pytrace=False)
    pytest.skip(message)


def require_executable(name: str, install: str) -> str:
    """The path of executable `name`, or a skip/failure that names `install`."""
    path = shutil.which(name)
    if path is None:
        missing(f"`{name}`", install)
    return path
