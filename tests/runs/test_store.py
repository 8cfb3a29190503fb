"""One behavioural suite for the `runs/store.py` protocols, run against both backends.

`local` is the embedded default (SQLite journal, in-memory pacer and leases) under a clock the test moves;
`redis` is a real redis-server (`tests/redis_server.py`), where time passes for real, so windows are short.
"Two replicas" are two independent handles: two journals on one SQLite file, or two Redis clients.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.local import (
    LocalFollowLease,
    LocalKnownRuns,
    LocalLeaseTable,
    LocalPacer,
    LocalStartClaims,
    LocalVerifiedTokens,
)
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.store import (
    FollowLease,
    KnownRuns,
    Pacer,
    RunFacts,
    RunsQuery,
    StartClaims,
    StoreUnavailableError,
    VerifiedTokens,
)
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

FP_A = token_fingerprint("mog_store_suite_user_a")
FP_B = token_fingerprint("mog_store_suite_user_b")
REQUEST = "9" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


class Backend:
    """Makes handles ("replicas") on one backend and lets time pass for it."""

    name = "abstract"

    def pacer_window(self, wanted: float) -> float:
        """The sliding window a pacer made with `pacer(..., wanted)` has (the local one is always 60 s)."""
        return wanted

    async def elapse(self, seconds: float) -> None:
        raise NotImplementedError

    def claims(self, window_seconds: float = 600.0) -> StartClaims:
        raise NotImplementedError

    def known_runs(self, max_runs: int = 200, max_age_seconds: int = 30 * 86_400) -> KnownRuns:
        raise NotImplementedError

    def pacer(self, per_minute: int, window_seconds: float) -> Pacer:
        raise NotImplementedError

    def lease(self, holder: str, lease_seconds: float) -> FollowLease:
        raise NotImplementedError

    def verified(self, keep_seconds: float, max_kept: int = 10_000) -> VerifiedTokens:
        raise NotImplementedError

    def now(self) -> float:
        return time.time()


class LocalBackend(Backend):
    name = "local"

    def __init__(self, path: Path) -> None:
        self.clock = FakeClock()
        self.path = path
        self.journals: list[StartJournal] = []
        self.leases = LocalLeaseTable(clock=self.clock)
        self.pacers: dict[int, LocalPacer] = {}
        self.verified_stores: list[LocalVerifiedTokens] = []

    async def elapse(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    def _journal(self, **options: Any) -> StartJournal:
        journal = StartJournal(self.path, clock=self.clock, **options)
        self.journals.append(journal)
        return journal

    def claims(self, window_seconds: float = 600.0) -> StartClaims:
        return LocalStartClaims(self._journal(window_seconds=window_seconds))

    def known_runs(self, max_runs: int = 200, max_age_seconds: int = 30 * 86_400) -> KnownRuns:
        return LocalKnownRuns(self._journal(max_runs=max_runs), max_age_seconds, clock=self.clock)

    def pacer_window(self, wanted: float) -> float:
        return 60.0  # RequestPacer's window; the fake clock makes it free to wait out

    def pacer(self, per_minute: int, window_seconds: float) -> Pacer:
        # In-memory budgets are per process: every "replica" here is the same process, so one pacer.
        if per_minute not in self.pacers:
            self.pacers[per_minute] = LocalPacer(per_minute, clock=self.clock, sleep=self.clock.sleep)
        return self.pacers[per_minute]

    def lease(self, holder: str, lease_seconds: float) -> FollowLease:
        return LocalFollowLease(self.leases, holder, lease_seconds)

    def verified(self, keep_seconds: float, max_kept: int = 10_000) -> VerifiedTokens:
        made = LocalVerifiedTokens(
            self.path.with_name("verified.sqlite3"), keep_seconds, max_kept=max_kept, clock=self.clock
        )
        self.verified_stores.append(made)
        return made

    def now(self) -> float:
        return self.clock()

    async def aclose(self) -> None:
        for journal in self.journals:
            journal.close()
        for store in self.verified_stores:
            store.close()


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex[:12]}:"  # each test its own keyspace
        self.stores: list[redis_backend.RedisStore] = []

    def _store(self) -> redis_backend.RedisStore:
        store = redis_backend.connect(self.url, prefix=self.prefix)
        self.stores.append(store)
        return store

    async def elapse(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def claims(self, window_seconds: float = 600.0) -> StartClaims:
        return redis_backend.RedisStartClaims(self._store(), window_seconds=window_seconds)

    def known_runs(self, max_runs: int = 200, max_age_seconds: int = 30 * 86_400) -> KnownRuns:
        return redis_backend.RedisKnownRuns(self._store(), max_runs=max_runs, retention_seconds=max_age_seconds)

    def pacer(self, per_minute: int, window_seconds: float) -> Pacer:
        return redis_backend.RedisPacer(self._store(), per_minute, window_seconds=window_seconds)

    def lease(self, holder: str, lease_seconds: float) -> FollowLease:
        return redis_backend.RedisFollowLease(self._store(), holder, lease_seconds)

    def verified(self, keep_seconds: float, max_kept: int = 10_000) -> VerifiedTokens:
        return redis_backend.RedisVerifiedTokens(self._store(), keep_seconds, max_kept=max_kept)

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made: LocalBackend | RedisBackend
    if request.param == "local":
        made = LocalBackend(tmp_path / "journal.sqlite3")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisBackend(server.url)
    try:
        yield made
    finally:
        await made.aclose()


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently; their results in call order."""
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for index, call in enumerate(calls):
                tg.start_soon(run, index, call)
    return results


# --- start claims -------------------------------------------------------------------------------


async def test_identical_start_within_window_reuses_the_key(backend: Backend) -> None:
    claims = backend.claims()
    first = await claims.claim_key(FP_A, REQUEST)
    await backend.elapse(0.05)
    again = await claims.claim_key(FP_A, REQUEST)

    assert not first.reused
    assert again.reused and again.idempotency_key == first.idempotency_key
    assert 0.0 <= again.age_seconds < 600.0
    assert again.run_id is None


async def test_start_after_the_window_gets_a_fresh_key(backend: Backend) -> None:
    claims = backend.claims(window_seconds=0.3)
    first = await claims.claim_key(FP_A, REQUEST)
    await backend.elapse(0.6)
    later = await claims.claim_key(FP_A, REQUEST)

    assert not later.reused
    assert later.idempotency_key != first.idempotency_key


async def test_recorded_run_is_named_and_forget_frees_the_request(backend: Backend) -> None:
    claims = backend.claims()
    first = await claims.claim_key(FP_A, REQUEST)
    await claims.record_started(FP_A, REQUEST, "run-1")
    replay = await claims.claim_key(FP_A, REQUEST)
    await claims.forget(FP_A, REQUEST)
    fresh = await claims.claim_key(FP_A, REQUEST)

    assert replay.reused and replay.run_id == "run-1" and replay.idempotency_key == first.idempotency_key
    assert not fresh.reused and fresh.idempotency_key != first.idempotency_key and fresh.run_id is None


async def test_claims_are_per_token_and_a_zero_window_never_reuses(backend: Backend) -> None:
    claims = backend.claims()
    mine = await claims.claim_key(FP_A, REQUEST)
    theirs = await claims.claim_key(FP_B, REQUEST)
    off = backend.claims(window_seconds=0)
    one, two = await off.claim_key(FP_A, "1" * 64), await off.claim_key(FP_A, "1" * 64)

    assert not theirs.reused and theirs.idempotency_key != mine.idempotency_key
    assert not one.reused and not two.reused and one.idempotency_key != two.idempotency_key


async def test_concurrent_identical_starts_on_two_replicas_share_one_key(backend: Backend) -> None:
    replicas = [backend.claims(), backend.claims()]
    calls = [lambda n=n: replicas[n % 2].claim_key(FP_A, REQUEST) for n in range(16)]
    claims = await gather(*calls)

    assert len({claim.idempotency_key for claim in claims}) == 1
    assert sum(not claim.reused for claim in claims) == 1


# --- known runs ---------------------------------------------------------------------------------


async def test_known_runs_newest_first_and_upserted(backend: Backend) -> None:
    runs = backend.known_runs()
    added = [await runs.remember_run(FP_A, f"run-{n}", title=f"Task {n}", status="queued") for n in range(3)]
    again = await runs.remember_run(FP_A, "run-0", status="completed")
    listed = await runs.known_runs(FP_A)

    assert added == [True, True, True] and again is False
    assert [run.run_id for run in listed] == ["run-2", "run-1", "run-0"]
    oldest = listed[-1]
    assert (oldest.title, oldest.status) == ("Task 0", "completed")  # the title stays when a later call omits it
    assert oldest.last_seen >= oldest.first_seen
    assert [run.run_id for run in await runs.known_runs(FP_A, limit=2)] == ["run-2", "run-1"]
    assert await runs.known_runs(FP_A, limit=0) == []


async def test_known_runs_are_bounded_per_token(backend: Backend) -> None:
    runs = backend.known_runs(max_runs=3)
    for n in range(5):
        await runs.remember_run(FP_A, f"run-{n}")

    assert [run.run_id for run in await runs.known_runs(FP_A)] == ["run-4", "run-3", "run-2"]
    assert not await runs.is_known(FP_A, "run-0")
    assert await runs.is_known(FP_A, "run-4")
    assert (await runs.known_runs(FP_A))[0].title == "run-4"  # no title: the run id stands in


async def test_known_runs_are_not_served_past_their_age_limit(backend: Backend) -> None:
    """Issue 23, #7: retention has an age limit (MOGPLEX_KNOWN_RUN_MAX_AGE_DAYS, 30 days by default)."""
    runs = backend.known_runs(max_age_seconds=1)
    await runs.remember_run(FP_A, "run-old", title="Old", status="success")
    assert await runs.is_known(FP_A, "run-old")
    await backend.elapse(1.5)
    assert not await runs.is_known(FP_A, "run-old") and await runs.known_run(FP_A, "run-old") is None
    assert await runs.known_runs(FP_A) == []


async def test_known_runs_are_isolated_by_token_and_shared_by_replicas(backend: Backend) -> None:
    one, two = backend.known_runs(), backend.known_runs()
    await one.remember_run(FP_A, "run-a", title="Mine")
    await two.remember_run(FP_B, "run-b", title="Theirs")

    assert [run.run_id for run in await two.known_runs(FP_A)] == ["run-a"]
    assert [run.run_id for run in await one.known_runs(FP_B)] == ["run-b"]
    assert await two.is_known(FP_A, "run-a") and not await two.is_known(FP_A, "run-b")


async def test_known_runs_keep_facts_and_page_newest_first_with_filters(backend: Backend) -> None:
    runs = backend.known_runs()
    for n in range(6):
        status = "success" if n % 2 else "streaming"
        await runs.remember_run(FP_A, f"run-{n}", status=status, repo_id=f"repo-{n % 2}")
    await runs.remember_run(FP_A, "run-1", facts=RunFacts(conversation_id="conv-1", working_branch="feature/x"))
    await runs.remember_run(FP_A, "run-1", facts=RunFacts(pull_request_url="https://x/pull/1", code_changed=True))
    await runs.remember_run(FP_B, "theirs", status="streaming")

    one = await runs.known_run(FP_A, "run-1")
    assert one is not None and one.status == "success"
    assert one.facts == RunFacts(
        working_branch="feature/x", conversation_id="conv-1", pull_request_url="https://x/pull/1", code_changed=True
    ), "facts fill in; a later unknown never erases one"
    assert await runs.known_run(FP_B, "run-1") is None and await runs.known_run(FP_A, "missing") is None

    seen: list[str] = []
    before = None
    for _ in range(5):
        page = await runs.runs_page(FP_A, RunsQuery(limit=4, before=before))
        seen += [run.run_id for run in page]
        if len(page) < 4:
            break
        before = (page[-1].first_seen, page[-1].position)
    assert seen == [f"run-{n}" for n in reversed(range(6))]
    finished = await runs.runs_page(FP_A, RunsQuery(limit=10, terminal=True))
    assert [run.run_id for run in finished] == ["run-5", "run-3", "run-1"]
    active_on_0 = await runs.runs_page(FP_A, RunsQuery(limit=10, terminal=False, repo_id="repo-0"))
    assert [run.run_id for run in active_on_0] == ["run-4", "run-2", "run-0"]


# --- pacer --------------------------------------------------------------------------------------


async def test_pacer_budget_is_shared_by_replicas_and_per_token(backend: Backend) -> None:
    one, two = backend.pacer(3, 3.0), backend.pacer(3, 3.0)
    await one.acquire(FP_A)
    await two.acquire(FP_A)
    await one.acquire(FP_A)

    assert await one.delay_needed(FP_A) > 0
    assert await two.delay_needed(FP_A) > 0
    assert await two.delay_needed(FP_B) == 0.0
    await backend.elapse(backend.pacer_window(3.0) + 0.1)
    assert await two.delay_needed(FP_A) == 0.0


async def test_pacers_together_never_exceed_the_budget_in_any_window(backend: Backend) -> None:
    budget = 3
    one, two = backend.pacer(budget, 0.6), backend.pacer(budget, 0.6)
    calls = [lambda n=n: (one if n % 2 else two).acquire(FP_A) for n in range(10)]
    granted = sorted(await gather(*calls))

    assert len(granted) == 10
    # Any `budget + 1` consecutive grants span at least the window: the sliding-window promise.
    spans = [granted[n + budget] - granted[n] for n in range(len(granted) - budget)]
    assert min(spans) >= backend.pacer_window(0.6) - 1e-6


async def test_a_pause_holds_every_replica_and_never_shortens(backend: Backend) -> None:
    one, two = backend.pacer(10, 60.0), backend.pacer(10, 60.0)
    await one.pause(FP_A, 2.0)
    await one.pause(FP_A, 0.1)  # a shorter pause does not cut the longer one

    assert 0.5 < await two.delay_needed(FP_A) <= 2.0
    assert await two.delay_needed(FP_B) == 0.0
    await backend.elapse(2.2)
    assert await two.delay_needed(FP_A) == 0.0


# --- follow leases ------------------------------------------------------------------------------


async def test_a_lease_has_one_holder_until_released(backend: Backend) -> None:
    alpha, beta = backend.lease("replica-a", 30.0), backend.lease("replica-b", 30.0)

    assert await alpha.acquire("run-1")
    assert not await beta.acquire("run-1")
    assert await alpha.acquire("run-1")  # the holder may take it again
    assert await beta.acquire("run-2")  # another run is another lease
    assert not await beta.renew("run-1") and not await beta.release("run-1")
    assert await alpha.release("run-1")
    assert await beta.acquire("run-1")


async def test_renewing_keeps_a_lease_past_its_length(backend: Backend) -> None:
    alpha, beta = backend.lease("replica-a", 2.0), backend.lease("replica-b", 2.0)
    assert await alpha.acquire("run-1")
    for _ in range(3):
        await backend.elapse(0.8)
        assert await alpha.renew("run-1")

    assert not await beta.acquire("run-1")


async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_told(backend: Backend) -> None:
    alpha, beta = backend.lease("replica-a", 0.3), backend.lease("replica-b", 0.3)
    assert await alpha.acquire("run-1")
    await backend.elapse(0.6)

    assert await beta.acquire("run-1")
    assert not await alpha.renew("run-1")
    assert not await alpha.release("run-1")  # it cannot free what the new holder has
    assert not await alpha.acquire("run-1")


# --- Redis trouble ------------------------------------------------------------------------------


async def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    store = redis_backend.connect(
        f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0", limits=redis_backend.RedisLimits(command_seconds=0.5)
    )
    try:
        with anyio.fail_after(30), pytest.raises(StoreUnavailableError) as caught:
            await redis_backend.RedisStartClaims(store).claim_key(FP_A, REQUEST)
    finally:
        await store.aclose()

    message = str(caught.value)
    assert "unavailable" in message and "claim an idempotency key" in message
    assert "hunter2" not in message and "***" in message


# --- verified tokens ----------------------------------------------------------------------------


async def test_a_verified_token_is_known_to_the_next_process_and_a_refusal_forgets_it(backend: Backend) -> None:
    first, restarted = backend.verified(600.0), backend.verified(600.0)
    accepted_at = backend.now()
    await first.record(FP_A, accepted_at)
    await first.record(FP_B, accepted_at)
    assert await restarted.recent(0.0) == {FP_A: accepted_at, FP_B: accepted_at}
    assert await restarted.accepted_at(FP_A) == accepted_at and await restarted.accepted_at("f" * 32) is None
    await restarted.record(FP_B, None)  # upstream said 401 for it
    assert set(await first.recent(0.0)) == {FP_A}
    assert await first.recent(accepted_at + 1) == {}, "only acceptances since the time asked for"


async def test_verified_tokens_are_bounded_in_age_and_count(backend: Backend) -> None:
    store = backend.verified(1.0, max_kept=3)
    await store.record(FP_A, backend.now())
    await backend.elapse(1.3)
    assert await store.recent(0.0) == {}, "older than keep_seconds: gone"
    fingerprints = [token_fingerprint(f"mog_store_suite_many_{n}") for n in range(5)]
    for n, fingerprint in enumerate(fingerprints):
        await store.record(fingerprint, backend.now() + n / 100)
    assert set(await store.recent(0.0)) == set(fingerprints[2:]), "the newest max_kept stay"
