"""The event cache is bounded in bytes (issue 23, #4): events are cut to what a view shows on arrival (with a
note), each run and the whole cache hold a byte budget, and views of huge events cost what views of small ones
cost. Memory is measured with tracemalloc (allocations still held), never RSS or wall-clock time."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.followed_run import EventCache, RunFollower
from mogplex_mcp.runs.slim import NOTE_KEY
from mogplex_mcp.runs.views import find_delivery
from mogplex_mcp.server.compact_views import compact_event_views, transcript_tail

MB = 1024 * 1024


def _event(n: int, message: str | None = None, **payload: Any) -> RunEvent:
    return RunEvent.model_validate({"id": f"e{n}", "type": "log", "message": message, "payload": payload})


def big_events(count: int, size: int = 900 * 1024) -> list[RunEvent]:
    return [_event(n, "word " * (size // 5)) for n in range(count)]


def test_huge_events_are_kept_cut_and_memory_stays_flat() -> None:
    follower = RunFollower("run", "fp", max_events=5_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        follower.add_events(big_events(150))  # 135 MB of text arrives …
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4 * MB, f"… and {held / MB:.1f} MB of it stays after the events were taken"
    assert follower.event_count == 150 and follower.bytes < 1 * MB
    message = follower.events()[0].message or ""
    assert len(message) < 2_100 and message.endswith("more characters not kept]"), "cut, and it says so"


def test_a_huge_payload_keeps_what_the_outcome_needs() -> None:
    url = "https://github.com/acme/api/pull/7"
    follower = RunFollower("run", "fp", max_events=5_000)
    follower.add_events([_event(1, stage="git_delivery", pull_request_url=url, changed=True, diff="+x\n" * 300_000)])
    (kept,) = follower.events()
    assert kept.payload[NOTE_KEY] and len(str(kept.payload)) < 10_000
    delivery = find_delivery(follower.events())
    assert delivery is not None and delivery.pull_request_url == url and delivery.changed is True


def test_a_cut_never_splits_a_token_so_redaction_still_sees_it() -> None:
    token = "mog_" + "Q" * 28
    follower = RunFollower("run", "fp", max_events=10)
    follower.add_events([_event(1, "a " * 995 + token + " tail" * 1_000)])  # the cut falls inside the token
    message = follower.events()[0].message or ""
    assert "mog_" not in message and "QQQQ" not in message


def test_each_run_and_the_whole_cache_hold_their_byte_budgets() -> None:
    cache = EventCache(max_bytes=3 * MB)
    runs = [RunFollower(f"run{n}", "fp", max_events=5_000, max_bytes=2 * MB, cache=cache) for n in range(3)]
    medium = [_event(n, "x " * 2_000, output="y " * 2_500) for n in range(2_000)]  # ~9 KB each as kept
    for follower in runs:
        follower.add_events(medium)
        assert follower.bytes <= 2 * MB, "one run's budget"
    assert cache.bytes <= 3 * MB + 2 * MB // 8, "the whole cache's budget (each keeps at least its newest events)"
    assert all(follower.dropped_events > 0 for follower in runs)
    assert runs[-1].events()[-1].id == "e1999", "the newest events are the ones kept"
    for follower in runs:
        follower.release()
    assert cache.bytes == 0


def cpu(work: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return max(best, 1e-4)


def test_views_of_huge_events_cost_what_views_of_small_ones_cost() -> None:
    small, huge = RunFollower("a", "fp", 5_000), RunFollower("b", "fp", 5_000)
    small.add_events([_event(n, "a log line " * 100) for n in range(150)])  # 1.1 KB each
    huge.add_events(big_events(150))

    def views(follower: RunFollower) -> Any:
        return lambda: (
            compact_event_views(follower.events(), "mog_secret", 20),
            transcript_tail(follower.compactor.lines(), "mog_secret", 40_000),
        )

    ratio = cpu(views(huge)) / cpu(views(small))
    assert ratio < 10, f"views of 150 events of 900 KB cost {ratio:.1f}x those of 150 of 1.1 KB"
