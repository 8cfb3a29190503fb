"""One follower per run cluster-wide: a renewed lease picks the replica that asks the upstream; the rest read its feed.

`FollowerHub` (follower.py) hands each follower's loop to a `SharedFollowing` when `--redis-url` is set. The
replica holding the run's `FollowLease` (taken with SET NX PX, renewed every second, lost after
`LEASE_SECONDS`) follows the run upstream as it always did and publishes every change to the run's
`FollowFeed`; every other replica with a watcher feeds its local `RunFollower` from that feed, so its waits,
resources and notifications work unchanged without a single upstream request. When the leader stops (run
over, nobody watching) it releases the lease; when it dies the lease expires and the next replica reading an
idle feed takes it over, resuming from the events it already has (the stream from its last event id, polls
de-duplicated by id). When Redis fails, every replica follows its runs by itself (logged once per outage).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from mogplex_mcp.api.models import RunEvent
from mogplex_mcp.runs.followed_run import RunFollower
from mogplex_mcp.runs.store import FeedUpdate, FollowFeed, FollowLease, StoreUnavailableError

logger = logging.getLogger("mogplex_mcp.runs")

# A dead leader's lease runs out after this; a live one renews it every RENEW_SECONDS.
LEASE_SECONDS = 4.0
RENEW_SECONDS = 1.0
# How long a reader waits on an idle feed before it checks whether the lease is free.
FEED_BLOCK_SECONDS = 1.0

Announce = Callable[[RunFollower, list[RunEvent], bool], Awaitable[None]]


class _FollowAlone(Exception):
    """The feed says: follow this run upstream by yourself."""


class FollowCoordinator(Protocol):
    """Decides, per run, whether this replica follows it upstream or from another replica's feed."""

    async def follow(
        self,
        follower: RunFollower,
        lead: Callable[[], Awaitable[None]],
        announce: Announce,
        stop: Callable[[RunFollower], bool],
    ) -> None:
        """Follow until `stop` says so: by `lead()` (upstream) while leading, else from the feed."""
        ...

    async def publish(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        """Share a change this replica saw upstream (a no-op unless it leads the run)."""
        ...

    def hand_over(self) -> None:
        """This replica is stopping: release every lease now and take no more (another replica follows)."""
        ...


class SharedFollowing:
    """The lease-and-feed coordinator for one replica (`holder` names it in the leases)."""

    def __init__(self, lease: FollowLease, feed: FollowFeed) -> None:
        self._lease = lease
        self._feed = feed
        self._leading: set[tuple[str, str]] = set()
        self._degraded = False
        self._warned_format = False
        self._handing_over = anyio.Event()

    def hand_over(self) -> None:
        self._handing_over.set()

    @property
    def leading_count(self) -> int:
        """Follow leases this replica holds right now."""
        return len(self._leading)

    def leads(self, follower: RunFollower) -> bool:
        return (follower.fingerprint, follower.run_id) in self._leading

    async def publish(self, follower: RunFollower, fresh: list[RunEvent], status_changed: bool) -> None:
        if not self.leads(follower):
            return
        update = FeedUpdate(run=follower.run, events=fresh, window_exhausted=follower.window_exhausted)
        try:
            await self._feed.publish(follower.fingerprint, follower.run_id, update)
        except StoreUnavailableError as exc:
            self._fell_back(exc)

    async def follow(
        self,
        follower: RunFollower,
        lead: Callable[[], Awaitable[None]],
        announce: Announce,
        stop: Callable[[RunFollower], bool],
    ) -> None:
        name = f"follow:{follower.fingerprint}:{follower.run_id}"
        cursor = "0"
        try_lease = True
        while not stop(follower):
            try:
                if try_lease and await self._take_lease(name):
                    if await self._lead(follower, name, lead):
                        return
                    follower.set_streaming(False)  # lost the lease: read the new leader's feed
                cursor, fed = await self._read_feed(follower, cursor, announce)
                try_lease = not fed  # an idle feed may mean a dead leader: is its lease free?
            except _FollowAlone:
                await lead()  # the leader does not share this run (budget, memory, a newer format)
                return
            except StoreUnavailableError as exc:
                self._fell_back(exc)
                await lead()  # by ourselves until this follower's loop ends
                return

    async def _take_lease(self, name: str) -> bool:
        if self._handing_over.is_set():
            return False  # draining: read the feed while our last waits end; another replica leads
        taken = await self._lease.acquire(name)
        self._answered()
        return taken

    def _answered(self) -> None:
        if self._degraded:
            self._degraded = False
            logger.info("Redis answers again: runs are followed once across replicas")

    async def _lead(self, follower: RunFollower, name: str, lead: Callable[[], Awaitable[None]]) -> bool:
        """Follow upstream while the lease holds; True when following ended, False when the lease was lost."""
        key = (follower.fingerprint, follower.run_id)
        self._leading.add(key)
        finished = False
        try:
            async with anyio.create_task_group() as tg:

                async def lead_then_stop() -> None:
                    nonlocal finished
                    await lead()
                    finished = True
                    tg.cancel_scope.cancel()

                async def hand_over_then_stop() -> None:
                    # Draining: stop asking upstream and release the lease at once (below), so the next replica
                    # whose feed goes idle takes it within a second instead of waiting LEASE_SECONDS for expiry.
                    nonlocal finished
                    await self._handing_over.wait()
                    logger.info("following %s: handing the run over to another replica", follower.run_id)
                    finished = True
                    tg.cancel_scope.cancel()

                tg.start_soon(lead_then_stop)
                tg.start_soon(hand_over_then_stop)
                await self._keep_lease(name)
                logger.info("following %s: lost its lease, reading the new leader's feed", follower.run_id)
                tg.cancel_scope.cancel()
        finally:
            self._leading.discard(key)
            if finished:
                await self._release(name)
        return finished

    async def _keep_lease(self, name: str) -> None:
        """Renew every RENEW_SECONDS; return when the lease is lost.

        Redis failing: keep leading (alone, logged once) and keep trying to renew. A blip shorter than the lease
        (one timeout opens the store's circuit breaker for a few seconds) costs nothing; after a longer outage
        the renewal is refused (the lease ran out), this replica reads the feed and one leader is chosen again.
        """
        while True:
            await anyio.sleep(RENEW_SECONDS)
            try:
                if not await self._lease.renew(name):
                    return
            except StoreUnavailableError as exc:
                self._fell_back(exc)
                continue
            self._answered()

    async def _release(self, name: str) -> None:
        # Shielded: a cancelled follower still hands its run over; an unreachable Redis lets the lease expire.
        with anyio.CancelScope(shield=True), anyio.move_on_after(3), contextlib.suppress(StoreUnavailableError):
            await self._lease.release(name)

    async def _read_feed(self, follower: RunFollower, cursor: str, announce: Announce) -> tuple[str, bool]:
        """One blocking read of the feed into the local follower; (new cursor, whether anything came)."""
        entries = await self._feed.read(follower.fingerprint, follower.run_id, cursor, FEED_BLOCK_SECONDS)
        for entry_id, update in entries:
            cursor = entry_id
            if update.follow_alone:
                self._alone(follower, update)
            fresh, status_changed = follower.absorb(update.run, update.events, update.window_exhausted)
            if fresh or status_changed:
                await announce(follower, fresh, status_changed)
        return cursor, bool(entries)

    def _alone(self, follower: RunFollower, update: FeedUpdate) -> None:
        if update.newer_format is not None and not self._warned_format:
            self._warned_format = True
            logger.warning(
                "a replica writes run feeds in format %s, newer than this one reads: runs it leads are followed"
                " here by this replica itself (finish the rolling deploy to share them again)",
                update.newer_format,
            )
        logger.info("following %s by itself: its leader does not share it through Redis", follower.run_id)
        raise _FollowAlone

    def _fell_back(self, exc: StoreUnavailableError) -> None:
        if not self._degraded:
            self._degraded = True
            logger.warning("following runs on this replica by itself: %s", exc)
