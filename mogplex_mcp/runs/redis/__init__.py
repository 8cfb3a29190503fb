"""The shared backend of `runs/store.py` on Redis (redis-py's asyncio client): one module per protocol.

Every replica of an HTTP server pointed at the same `--redis-url` shares start claims, known runs, each
token's request budget, the follow leases and each run's feed
(what its leader saw). Atomic steps are Lua scripts beside the modules, run through
redis-py's `Script` helper (EVALSHA, reloaded by itself after a Redis restart). Keys hold token fingerprints,
never tokens. Importing this package imports redis-py (~0.4 s): only `--redis-url` does.
"""

from mogplex_mcp.runs.redis.claims import RedisStartClaims
from mogplex_mcp.runs.redis.connection import DEFAULT_PREFIX, RedisLimits, RedisStore, connect
from mogplex_mcp.runs.redis.follow_feed import RedisFollowFeed
from mogplex_mcp.runs.redis.known_runs import RedisKnownRuns
from mogplex_mcp.runs.redis.lease import RedisFollowLease
from mogplex_mcp.runs.redis.pacer import RedisPacer
from mogplex_mcp.runs.redis.verified import RedisVerifiedTokens

__all__ = [
    "DEFAULT_PREFIX",
    "RedisFollowFeed",
    "RedisFollowLease",
    "RedisKnownRuns",
    "RedisLimits",
    "RedisPacer",
    "RedisStartClaims",
    "RedisStore",
    "RedisVerifiedTokens",
    "connect",
]
