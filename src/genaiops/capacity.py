"""How many line workers a batch run gets when the config says `worker_count: auto` (the default),
and how many batch runs go at once.

Enough to keep the LLM quota busy, and never more than the lines to run, the memory can hold or,
for a flow that makes no LLM call, the cores can use. LLM-bound lines mostly wait, so their
worker count follows the quota rather than the cores; the LLM gateway queues whatever the quota
cannot take yet, so a few workers too many cost memory, not 429s.
"""

from __future__ import annotations

import math
import os

LLM_WORKERS = 16  # LLM-bound flow, no quota known: workers mostly wait on the network
ASSUMED_CALL_SEC = 2.0  # with a quota: requests/s x a typical call's latency keeps it busy
MAX_LLM_WORKERS = 64
WORKER_MB = 100  # resident memory of one forked line worker, with headroom (measured 40-80 MB)
MEMORY_SHARE = 0.5  # of the memory available now


def available_memory_mb() -> float | None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with promptflow
        return None
    return psutil.virtual_memory().available / 2**20


def quota_requests_per_sec(connections) -> float | None:
    """The smallest per-second request budget the connections' quotas allow (None: no quota)."""
    budgets = [c.rpm / 60 for c in connections if getattr(c, "rpm", None)]
    return min(budgets) if budgets else None


def auto_workers(rows: int, *, calls_llm: bool | None, quota_rps: float | None = None,
                 cores: int | None = None, memory_mb: float | None = None) -> int:
    """Workers for one batch of `rows` lines (`calls_llm` None = unknown, treated as LLM-bound)."""
    cores = cores or os.cpu_count() or 1
    if calls_llm is False:
        wanted = cores
    elif quota_rps:
        wanted = min(MAX_LLM_WORKERS, max(cores, math.ceil(quota_rps * ASSUMED_CALL_SEC)))
    else:
        wanted = LLM_WORKERS
    memory_mb = available_memory_mb() if memory_mb is None else memory_mb
    if memory_mb is not None:
        wanted = min(wanted, max(1, int(memory_mb * MEMORY_SHARE / WORKER_MB)))
    return max(1, min(wanted, rows))


def worker_count(configured, rows: int, *, calls_llm: bool | None, connections=()) -> int:
    """`runtime.worker_count` (or `--workers`) as a number for a batch of `rows` lines."""
    if configured != "auto":
        return max(1, min(int(configured), max(1, rows)))
    return auto_workers(rows, calls_llm=calls_llm, quota_rps=quota_requests_per_sec(connections))


def parallel_runs(explicit: int | None, configured: int, runs: int, cores: int | None = None) -> int:
    """Batch runs at once: `--max-parallel` as given, else `runtime.max_parallel` but no more than
    half the cores. Each concurrent run has its own engine worker, whose start (importing the
    engine, ~2 CPU-s) and line workers keep about a core busy: on 2 cores a second worker costs
    more to start than running the next batch in the first one, once warm."""
    if explicit:
        return max(1, min(explicit, runs))
    cores = cores or os.cpu_count() or 1
    return max(1, min(configured, runs, max(1, cores // 2)))
