"""The shared store's time budget per tool call: every store command of one call together waits a bounded time.

A context variable carries what is left; backends (runs/redis/connection.py) cut each command at it and fail
at once when nothing is. `server/app.py` opens a budget per tool call; background work escapes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["spending_store_time", "store_budget", "store_time_left", "unbudgeted"]


@dataclass
class _StoreBudget:
    left: float  # seconds the shared store may still take in this call


# The shared store's time budget of the current tool call (None: no budget, e.g. background work).
_budget: ContextVar[_StoreBudget | None] = ContextVar("mogplex_store_budget", default=None)


@contextmanager
def store_budget(seconds: float) -> Iterator[None]:
    """Every shared-store command inside the block together may take at most `seconds` (one tool call).

    It counts time spent waiting on the store, not the call's own time: a 50 s wait_for_run still records its
    run in Redis at the end. Backends cut each command at what is left and fail at once when nothing is, so a
    tool call that touches the store several times waits on it `seconds` at most in all. Nested: the outer
    budget rules.
    """
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_StoreBudget(max(0.0, seconds)))
    try:
        yield
    finally:
        _budget.reset(token)


@contextmanager
def unbudgeted() -> Iterator[None]:
    """No call budget inside the block: for background work a tool call starts (it inherits the call's context)."""
    token = _budget.set(None)
    try:
        yield
    finally:
        _budget.reset(token)


def store_time_left() -> float | None:
    """Seconds the store may still take in this call; None outside any budget."""
    budget = _budget.get()
    return None if budget is None else budget.left


@contextmanager
def spending_store_time() -> Iterator[None]:
    """Charge the time the block takes to the call's store budget (a no-op outside one)."""
    budget = _budget.get()
    began = time.monotonic()
    try:
        yield
    finally:
        if budget is not None:
            budget.left -= time.monotonic() - began
