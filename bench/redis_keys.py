"""What mogplex-mcp keeps in a shared Redis, per key kind (`MEMORY USAGE`), and what one flooding run costs.

Feeds docs/scale.md's key budget: a start claim with its run, a token's runs list at its bound (200 runs with
every fact), a token's request budget at its bound (40 slots and a pause), a follow lease, and a run feed fed
2,000 events of 6 KB (12 MB raw) under the default budgets; plus one run's flood of 500 KB events, to show the
per-run byte budget holding whatever the upstream sends.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.redis_proc import redis_process
from bench.report import Section
from mogplex_mcp.api.models import RunDetail, RunEvent
from mogplex_mcp.runs import redis as shared
from mogplex_mcp.runs.redis.follow_feed import FeedLimits
from mogplex_mcp.runs.store import FeedUpdate, RunFacts

FP = "a" * 32
KB = 1024


async def _usage(store: shared.RedisStore, pattern: str) -> int:
    keys: Any = await store.client.keys(store.prefix + pattern)
    return sum([int(await store.client.memory_usage(key) or 0) for key in keys])


async def _runs_list(store: shared.RedisStore) -> int:
    runs = shared.RedisKnownRuns(store)
    for _ in range(200):
        facts = RunFacts(
            created_at="2026-12-07T07:00:00+00:00", updated_at="2026-12-07T07:30:00+00:00",
            working_branch="mogplex/fix-the-failing-auth-test-1234", root_directory="services/api",
            harness="codex", conversation_id=str(uuid.uuid4()), workspace_session_id=str(uuid.uuid4()),
            pull_request_url="https://github.com/acme/app/pull/1234", code_changed=True,
        )  # fmt: skip
        await runs.remember_run(
            FP, str(uuid.uuid4()), title="Fix the failing test in the auth module, then update the docs",
            status="success", repo_id=str(uuid.uuid4()), facts=facts,
        )  # fmt: skip
    return await _usage(store, "runs*")


async def _feed(store: shared.RedisStore, events: int, size: int) -> tuple[int, int]:
    """(memory of the run's feed keys, its token's spend counter) after `events` events of `size` bytes."""
    feed = shared.RedisFollowFeed(store)
    fingerprint, run_id = uuid.uuid4().hex, str(uuid.uuid4())
    for n in range(events):
        event = RunEvent(id=f"e{n}", type="log", message="m" * (size // 2), payload={"text": "t" * (size // 2)})
        await feed.publish(
            fingerprint, run_id, FeedUpdate(run=RunDetail(run_id=run_id, status="running"), events=[event])
        )
    feed_bytes = await _usage(store, f"feed*{fingerprint}:{run_id}")
    spent = int(await store.client.get(store.key("feed-spent", fingerprint)) or 0)
    return feed_bytes, spent


async def run() -> Section:
    section = Section(
        "redis_keys",
        "Redis key budget",
        "A throwaway redis-server (7.x, no persistence). Each kind of key written through the real backend "
        "classes, then Redis's own `MEMORY USAGE` summed over its keys.",
    )
    with redis_process() as url:
        store = shared.connect(url)
        try:
            claims = shared.RedisStartClaims(store)
            await claims.claim_key(FP, "h" * 64)
            await claims.record_started(FP, "h" * 64, str(uuid.uuid4()))
            section.add("start claim + its run", f"{await _usage(store, 'claim*')} B")
            section.add("runs list of one token, 200 runs with all facts", f"{await _runs_list(store) / KB:.0f} KB")
            pacer = shared.RedisPacer(store, 40)
            for _ in range(40):
                await pacer.acquire(FP)
            await pacer.pause(FP, 10)
            section.add("request budget of one token, 40 slots + a pause", f"{await _usage(store, 'pa*')} B")
            await shared.RedisFollowLease(store, "h" * 32, 4).acquire(f"follow:{FP}:{uuid.uuid4()}")
            section.add("follow lease", f"{await _usage(store, 'lease*')} B")
            limit = FeedLimits().run_bytes
            held, spent = await _feed(store, 2_000, 6 * KB)
            section.add(
                "run feed after 2,000 events of 6 KB (budget 1 MB)",
                f"{held / KB:.0f} KB",
                f"≤ {limit * 1.4 / KB:.0f} KB",
                held <= limit * 1.4,
            )
            section.add(
                "… its token's feed spending this hour", f"{spent / KB:.0f} KB", "≤ 8,192 KB", spent <= 8 * KB * KB
            )
            held, _ = await _feed(store, 40, 500 * KB)
            section.add(
                "run feed after 40 events of 500 KB (20 MB raw)",
                f"{held / KB:.0f} KB",
                f"≤ {limit * 1.4 / KB:.0f} KB",
                held <= limit * 1.4,
            )
        finally:
            await store.aclose()
    section.notes.append(
        "A feed's entries are compact (long text cut, big events as stubs), so its memory is set by the byte "
        "budget, not by what the upstream sends; Redis's Stream overhead comes on top of the budget."
    )
    return section
