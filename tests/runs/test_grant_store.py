"""The behavioural suite of `GrantStore` (runs/grant_store.py), run against both backends.

`local` is SQLite in the state dir under a clock the test moves; `redis` is a real redis-server, where time passes
for real (short lifetimes). "Two replicas" are two handles on one SQLite file or two Redis clients.
"""

from __future__ import annotations

import dataclasses
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from mogplex_mcp.runs import redis as redis_backend
from mogplex_mcp.runs.fingerprints import token_fingerprint
from mogplex_mcp.runs.grant_store import Grant, GrantStore, IssuedCode, IssuedToken, secret_hash
from mogplex_mcp.runs.local.grants import LocalGrantStore
from mogplex_mcp.runs.redis.grants import RedisGrantStore
from mogplex_mcp.runs.store import StoreUnavailableError
from tests.redis_server import RedisServer
from tests.runs.test_store import FakeClock, gather

pytestmark = pytest.mark.anyio

FP_A = token_fingerprint("mog_grant_suite_user_a")
FP_B = token_fingerprint("mog_grant_suite_user_b")


class Backend:
    name = "abstract"

    def store(self) -> GrantStore:
        raise NotImplementedError

    async def elapse(self, seconds: float) -> None:
        raise NotImplementedError


class LocalBackend(Backend):
    name = "local"

    def __init__(self, path: Path) -> None:
        self.clock = FakeClock()
        self.path = path
        self.stores: list[LocalGrantStore] = []

    def store(self) -> GrantStore:
        store = LocalGrantStore(self.path, clock=self.clock)
        self.stores.append(store)
        return store

    async def elapse(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    async def aclose(self) -> None:
        for store in self.stores:
            store.close()


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex[:12]}:"
        self.connections: list[redis_backend.RedisStore] = []

    def store(self) -> GrantStore:
        connection = redis_backend.connect(self.url, prefix=self.prefix)
        self.connections.append(connection)
        return RedisGrantStore(connection)

    async def elapse(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def aclose(self) -> None:
        for connection in self.connections:
            await connection.aclose()


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made: LocalBackend | RedisBackend
    if request.param == "local":
        made = LocalBackend(tmp_path / "state" / "oauth-grants.sqlite3")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisBackend(server.url)
    try:
        yield made
    finally:
        await made.aclose()


def a_code(store: GrantStore, lifetime: float = 60.0, fingerprint: str = FP_A) -> IssuedCode:
    return IssuedCode(
        grant_id=uuid.uuid4().hex, client_id="client-1", redirect_uri="http://127.0.0.1:9/cb",
        redirect_uri_explicit=True, code_challenge="c" * 43, scopes=("runs:read",), resource="http://x/mcp",
        fingerprint=fingerprint, sealed_pat="sealed", expires_at=store.now() + lifetime,
    )  # fmt: skip


def a_grant(store: GrantStore, fingerprint: str = FP_A, lifetime: float = 600.0) -> Grant:
    return Grant(
        grant_id=uuid.uuid4().hex, client_id="client-1", fingerprint=fingerprint, sealed_pat="sealed",
        scopes=("runs:read", "runs:write"), resource="http://x/mcp", expires_at=store.now() + lifetime,
    )  # fmt: skip


def a_token(store: GrantStore, grant: Grant, kind: str = "refresh", lifetime: float = 600.0) -> IssuedToken:
    return IssuedToken(
        kind=kind, grant_id=grant.grant_id, client_id=grant.client_id,  # type: ignore[arg-type]
        scopes=grant.scopes, resource=grant.resource, expires_at=store.now() + lifetime,
    )  # fmt: skip


async def test_a_code_is_taken_once_even_by_two_replicas_at_the_same_moment(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    code = a_code(one)
    await one.save_code(secret_hash("mcpc_x"), code)
    results = await gather(lambda: one.take_code(secret_hash("mcpc_x")), lambda: two.take_code(secret_hash("mcpc_x")))
    assert sorted(result is None for result in results) == [False, True]
    assert next(r for r in results if r is not None) == code
    assert await one.take_code(secret_hash("mcpc_x")) is None


async def test_an_expired_code_cannot_be_taken(backend: Backend) -> None:
    store = backend.store()
    await store.save_code(secret_hash("mcpc_old"), a_code(store, lifetime=0.3))
    await backend.elapse(0.6)
    assert await store.take_code(secret_hash("mcpc_old")) is None


async def test_a_grant_saved_by_one_replica_is_read_by_another_until_it_expires(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    grant = a_grant(one, lifetime=0.5)
    await one.save_grant(grant)
    assert await two.grant(grant.grant_id) == grant
    await backend.elapse(0.8)
    assert await two.grant(grant.grant_id) is None


async def test_extending_a_grant_keeps_it_past_its_first_expiry(backend: Backend) -> None:
    store = backend.store()
    grant = a_grant(store, lifetime=0.5)
    await store.save_grant(grant)
    await store.save_grant(dataclasses.replace(grant, expires_at=store.now() + 600))
    await backend.elapse(0.8)
    assert await store.grant(grant.grant_id) is not None


async def test_a_dropped_grant_is_gone_for_every_replica(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    grant = a_grant(one)
    await one.save_grant(grant)
    assert await two.drop_grant(grant.grant_id)
    assert await one.grant(grant.grant_id) is None
    assert not await two.drop_grant(grant.grant_id)


async def test_dropping_a_pats_grants_leaves_other_users_grants(backend: Backend) -> None:
    store = backend.store()
    mine = [a_grant(store, FP_A), a_grant(store, FP_A)]
    theirs = a_grant(store, FP_B)
    for grant in [*mine, theirs]:
        await store.save_grant(grant)
    assert sorted(await backend.store().drop_grants_of(FP_A)) == sorted(g.grant_id for g in mine)
    assert [await store.grant(g.grant_id) for g in mine] == [None, None]
    assert await store.grant(theirs.grant_id) == theirs
    assert await store.drop_grants_of(FP_A) == []


async def test_a_replica_checking_its_sessions_grants_sees_which_were_revoked_or_expired(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    kept, revoked, expiring = a_grant(one), a_grant(one), a_grant(one, lifetime=0.3)
    for grant in (kept, revoked, expiring):
        await one.save_grant(grant)
    ids = {kept.grant_id, revoked.grant_id, expiring.grant_id, "never-existed"}
    assert await two.live_grant_ids(ids) == {kept.grant_id, revoked.grant_id, expiring.grant_id}
    await one.drop_grant(revoked.grant_id)
    await backend.elapse(0.6)
    assert await two.live_grant_ids(ids) == {kept.grant_id}
    assert await two.live_grant_ids(set()) == set()


async def test_every_live_grant_is_listed_once_with_what_an_operator_needs(backend: Backend) -> None:
    store = backend.store()
    now = store.now()
    described = dataclasses.replace(
        a_grant(store), client_name="Claude", redirect_uri="https://claude.ai/cb", created_at=now, refreshed_at=now
    )
    many = [a_grant(store, FP_B) for _ in range(1203)]  # more than one page of either backend
    expired = a_grant(store, lifetime=0.3)
    for grant in (described, *many, expired):
        await store.save_grant(grant)
    await store.drop_grant(many[0].grant_id)
    await backend.elapse(0.6)
    listed = [grant async for grant in backend.store().grants()]
    assert len(listed) == len({g.grant_id for g in listed}) == 1 + 1202
    assert {g.grant_id for g in listed} == {described.grant_id} | {g.grant_id for g in many[1:]}
    assert next(g for g in listed if g.grant_id == described.grant_id) == described


async def test_a_grant_written_before_the_operator_fields_existed_still_reads() -> None:
    from mogplex_mcp.runs.grant_store import load_grant

    old = '{"grant_id":"g1","client_id":"c","fingerprint":"f","sealed_pat":"s","scopes":["runs:read"],'
    old += '"resource":"r","expires_at":1.0,"a_field_from_a_newer_version":1}'
    grant = load_grant(old)
    assert grant.client_name is None and grant.created_at is None and grant.scopes == ("runs:read",)


async def test_a_token_lives_until_its_expiry(backend: Backend) -> None:
    store = backend.store()
    grant = a_grant(store)
    token = a_token(store, grant, "access", lifetime=0.4)
    await store.save_token(secret_hash("mcpa_1"), token)
    assert await backend.store().token(secret_hash("mcpa_1")) == token
    assert await store.token(secret_hash("mcpa_unknown")) is None
    await backend.elapse(0.7)
    assert await store.token(secret_hash("mcpa_1")) is None


async def test_a_refresh_token_is_spent_once_and_a_replay_is_recognised(backend: Backend) -> None:
    one, two = backend.store(), backend.store()
    grant = a_grant(one)
    token = a_token(one, grant)
    await one.save_token(secret_hash("mcpr_1"), token)
    results = await gather(
        lambda: one.spend_refresh(secret_hash("mcpr_1")), lambda: two.spend_refresh(secret_hash("mcpr_1"))
    )
    assert sorted(first for _, first in results) == [False, True]  # exactly one first use
    assert all(spent == token for spent, _ in results)
    again = await one.spend_refresh(secret_hash("mcpr_1"))
    assert again is not None and again[1] is False  # still known as used: a replay, not an unknown token
    assert await one.spend_refresh(secret_hash("mcpr_unknown")) is None


async def test_nothing_secret_or_readable_by_others_in_the_local_file(tmp_path: Path) -> None:
    store = LocalGrantStore(tmp_path / "state" / "oauth-grants.sqlite3", clock=time.time)
    try:
        await store.save_token(secret_hash("mcpa_secret_value"), a_token(store, a_grant(store), "access"))
        assert stat.S_IMODE((tmp_path / "state" / "oauth-grants.sqlite3").stat().st_mode) == 0o600
        assert b"mcpa_secret_value" not in (tmp_path / "state" / "oauth-grants.sqlite3").read_bytes()
    finally:
        store.close()


async def test_a_redis_that_is_down_is_a_clear_store_error(tmp_path: Path) -> None:
    from tests.redis_server import free_port

    connection = redis_backend.connect(
        f"redis://127.0.0.1:{free_port()}/0", limits=redis_backend.RedisLimits(command_seconds=0.5)
    )
    try:
        with pytest.raises(StoreUnavailableError, match="could not read a grant"):
            await RedisGrantStore(connection).grant("x")
    finally:
        await connection.aclose()
