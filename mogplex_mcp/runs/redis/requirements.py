"""What mogplex-mcp needs of the Redis it shares (docs/scale.md "Redis memory and persistence"), as findings.

`mogplex-mcp doctor` reports them. Read from `INFO memory` and `INFO persistence` (allowed on the managed
services, unlike CONFIG GET):

- `maxmemory-policy noeviction`: start claims carry TTLs, so any volatile-* or allkeys-* policy may evict a
  live claim under memory pressure, and an identical start could then run twice.
- a `maxmemory`: without one, Redis grows to the host's memory and run feeds are not held back for claims.
- memory below the feeds' high-water mark: above it, runs are not shared (each replica follows them itself).
- AOF (`appendonly yes`): without persistence a Redis restart loses start claims; each replica's journal
  still remembers the claims it made (a retry through the same replica reuses its key), not the others'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mogplex_mcp.runs.redis.connection import RedisStore, redis_errors

MB = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    level: Literal["ok", "warn", "problem"]
    what: str
    fix: str | None = None


async def assess(store: RedisStore, high_water: float) -> list[Finding]:
    """What this Redis's settings mean for mogplex-mcp (StoreUnavailableError when it cannot be asked)."""
    async with redis_errors(store, "read Redis's settings"):
        memory: dict[str, Any] = await store.client.info("memory")
        persistence: dict[str, Any] = await store.client.info("persistence")
    return [*_memory_findings(memory, high_water), _persistence_finding(persistence)]


def _memory_findings(memory: dict[str, Any], high_water: float) -> list[Finding]:
    policy = str(memory.get("maxmemory_policy") or "unknown")
    used, most = int(memory.get("used_memory") or 0), int(memory.get("maxmemory") or 0)
    findings: list[Finding] = []
    if policy != "noeviction":
        findings.append(
            Finding(
                "problem",
                f"Redis evicts keys under memory pressure (maxmemory-policy {policy}): a live start claim could be"
                " evicted, and an identical start retried then would start a second run",
                "set maxmemory-policy noeviction (docs/scale.md, Redis memory and persistence)",
            )
        )
    if most <= 0:
        findings.append(
            Finding(
                "warn",
                f"Redis has no maxmemory (uses {used / MB:.1f} MB now): run feeds are not held back to leave room",
                "set maxmemory (docs/scale.md gives the key budget); 128 MB serves a few hundred users",
            )
        )
    elif used >= most * high_water:
        findings.append(
            Finding(
                "warn",
                f"Redis memory is at {used / most:.0%} of its maxmemory ({most / MB:.0f} MB): above"
                f" {high_water:.0%} run feeds are not shared (each replica follows its runs itself)",
                "raise maxmemory, or find what else this Redis holds",
            )
        )
    else:
        findings.append(Finding("ok", f"Redis memory: {used / MB:.1f} MB of {most / MB:.0f} MB used, policy {policy}"))
    return findings


def _persistence_finding(persistence: dict[str, Any]) -> Finding:
    if str(persistence.get("aof_enabled")) == "1":
        return Finding("ok", "Redis persists with AOF: start claims survive a Redis restart")
    return Finding(
        "warn",
        "Redis has no AOF: a Redis restart loses start claims (each replica's journal still remembers the starts"
        " it made, not those of the others)",
        "set appendonly yes (docs/scale.md, Redis memory and persistence)",
    )
