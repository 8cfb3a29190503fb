"""Rolling restarts behind nginx: the deployment of docs/scale.md ("Behind nginx"), longer than the suite runs it.

The same set-up as tests/deploy/test_proxy.py (nginx with deploy/nginx/mogplex-mcp.conf terminating TLS, three
`--stateless` replicas as the doc starts them, one redis-server, an emulator), and the same people working
through the proxy (tests/deploy/load.py); here more people, and the replicas restarted in turn several passes
over. Counted: failed calls, runs created upstream against starts, runs reported finished (once each); timed:
each replica's drain (SIGTERM to exit) and its start (to `/readyz` 200), and the calls' latency while every
replica was up against while one was restarting, in the same run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import anyio

from bench.measure import percentile
from bench.report import Section
from tests.deploy.load import Load, base_env, keep_working, team_upstream
from tests.deploy.proxy import Deployment, deployment
from tests.redis_server import running_redis

SPEED = 1.0  # the emulator's runs last about 14 s
STEADY_SECONDS = 20.0
PAUSE_BETWEEN_RESTARTS = 2.0


async def _restart_all(d: Deployment, passes: int) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Each replica in turn, `passes` times; (drain seconds, start seconds, restart windows)."""
    drains, starts, windows = [], [], []
    for _ in range(passes):
        for replica in d.replicas:
            began = time.monotonic()
            code = await replica.stop()
            stopped = time.monotonic()
            if code != 0:
                raise RuntimeError(f"a replica exited {code} after SIGTERM: {replica.log[-2000:]}")
            await replica.start()
            ready = time.monotonic()
            drains.append(stopped - began)
            starts.append(ready - stopped)
            windows.append((began, ready))
            await anyio.sleep(PAUSE_BETWEEN_RESTARTS)
    return drains, starts, windows


def _latencies(load: Load, tool: str, windows: list[tuple[float, float]], inside: bool) -> list[float]:
    def restarting(at: float) -> bool:
        return any(start <= at <= end for start, end in windows)

    return [seconds for began, name, seconds in load.samples if name == tool and restarting(began) == inside]


def _ms(values: list[float]) -> str:
    if not values:
        return "no calls"
    return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 95) * 1000:.0f} / {max(values) * 1000:.0f} ms"


async def run(people: int, passes: int) -> Section:
    section = Section(
        "rolling",
        "Rolling restart behind nginx",
        f"nginx (Debian's, `deploy/nginx/mogplex-mcp.conf`, TLS on loopback with a throwaway certificate) in front of "
        f"3 `--stateless` replicas started as docs/scale.md says, one redis-server, one emulator (runs of about 14 s). "
        f"{people} people, each with their own token, start a run, wait on it to the end with chained `wait_for_run` "
        f"calls and read it with `get_run`, again and again, through the proxy; after {STEADY_SECONDS:.0f} s the "
        f"replicas are SIGTERMed and started again one at a time ({passes} pass(es) over all three, "
        f"{PAUSE_BETWEEN_RESTARTS:.0f} s apart), then the people finish the run they are on.",
    )
    load = Load()
    workdir = Path(tempfile.mkdtemp(prefix="mogplex-rolling-"))  # kept when something failed: its logs
    with running_redis() as redis, team_upstream(SPEED) as emu:
        async with deployment(workdir, base_env(emu, workdir), redis.url) as d, anyio.create_task_group() as tg:
            for n in range(people):
                tg.start_soon(keep_working, d, n, load)
            await anyio.sleep(STEADY_SECONDS)
            drains, starts, windows = await _restart_all(d, passes)
            load.stop.set()
        created = emu.emulator.run_ids()
    started = set(load.started.values())
    once = sum(1 for run_id in started if load.finished_reports[run_id] == 1)
    section.add("tool calls answered / failed", f"{load.calls} / {len(load.failures)}", "0 failed", not load.failures)
    section.add(
        "runs started / created upstream",
        f"{len(started)} / {len(created)}",
        "equal (no duplicate)",
        set(created) == started,
    )
    section.add("runs reported finished exactly once", f"{once} of {len(started)}", "all", once == len(started))
    section.add("replica drain, SIGTERM → exit (median / max)", f"{percentile(drains, 50):.1f} / {max(drains):.1f} s")
    section.add("replica start → `/readyz` 200 (median / max)", f"{percentile(starts, 50):.1f} / {max(starts):.1f} s")
    for tool in ("start_run", "get_run"):
        steady = _latencies(load, tool, windows, inside=False)
        rolling = _latencies(load, tool, windows, inside=True)
        section.add(f"`{tool}` p50 / p95 / max: all replicas up", _ms(steady))
        section.add(f"`{tool}` p50 / p95 / max: one replica restarting", _ms(rolling))
    if load.failures:
        section.notes.append("First failures: " + "; ".join(load.failures[:3]) + f" (logs in {workdir})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    section.notes.append(
        "The 2 cores are shared by nginx, the replicas, Redis, the emulator and the clients (and other engineers' "
        "test suites), so the latencies say how a restart shifts them, not what a dedicated deployment answers."
    )
    return section
