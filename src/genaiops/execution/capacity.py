"""How many local line workers a batch run gets, how many batch runs go at once, and the most this
machine can hold, so that one setting cannot exhaust it.

`worker_count: auto` (the default): enough to keep the LLM quota busy, and never more than the
lines to run, the memory can hold or, for a flow that makes no LLM call, the cores can use.
LLM-bound lines mostly wait, so their worker count follows the quota rather than the cores; the
LLM gateway queues whatever the quota cannot take yet, so a few workers too many cost memory,
not 429s.

An explicit `runtime.worker_count` (or `--workers`) and `runtime.max_parallel` (or
`--max-parallel`) are checked against the machine. Each worker is a process: about 140 MB
resident, of which ~30 MB its own when forked (measured with the sample flows; spawned line
processes, as for prompty, own all of theirs). Validation refuses

- more than `WORKERS_PER_CORE` workers per core in one run, and
- more than `MEMORY_SHARE` of the machine's memory for all workers at once, at `WORKER_MB` each.

The machine is what this process may use: its CPU affinity, and a cgroup memory limit when lower
than physical memory (containers, CI agents).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

WORKERS_PER_CORE = 16
MAX_PARALLEL_RUNS = 64  # batch runs at once (`runtime.max_parallel`, `--max-parallel`), any machine
WORKER_MB = 150
MEMORY_SHARE = 0.75
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int

    @classmethod
    def current(cls) -> Machine:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        for limit in _CGROUP_LIMITS:
            try:
                value = limit.read_text().strip()
            except OSError:
                continue
            if value.isdigit():
                memory = min(memory, int(value))
        return cls(max(1, cores), memory)

    @property
    def workers_per_run(self) -> int:
        return self.cores * WORKERS_PER_CORE

    @property
    def workers_at_once(self) -> int:
        return max(1, int(self.memory_bytes * MEMORY_SHARE // (WORKER_MB * 2**20)))

    def describe(self) -> str:
        return f"{self.cores} core(s), {self.memory_bytes / 2**30:.1f} GiB"


def parallel_problem(max_parallel: int) -> str | None:
    """Why `max_parallel` batch runs at once is more than genaiops starts anywhere; or None."""
    if max_parallel > MAX_PARALLEL_RUNS:
        return (f"{max_parallel} runs at once is more than genaiops starts (at most "
                f"{MAX_PARALLEL_RUNS}: each run at once holds an engine worker process or an Azure "
                "ML submission)")
    return None


def parallel_hint() -> str:
    return (f"set it to {MAX_PARALLEL_RUNS} or less; more lines at once come from "
            "worker_count (`auto` sizes it to the quota)")


def worker_problem(worker_count: int | str, max_parallel: int,
                   machine: Machine | None = None) -> str | None:
    """Why `worker_count` workers per run, `max_parallel` runs at once, is too much here; or None.
    `auto` sizes itself to the memory available when a batch starts (`auto_workers`), but every run
    at once has at least one worker."""
    machine = machine or Machine.current()
    if worker_count == "auto":
        if max_parallel > machine.workers_at_once:
            return (f"{max_parallel} runs at once, each with at least one worker, is more than this "
                    f"machine's memory holds ({machine.describe()}: at most "
                    f"{machine.workers_at_once} workers at ~{WORKER_MB} MB each)")
        return None
    if worker_count > machine.workers_per_run:
        return (f"{worker_count} workers per run is more than this machine can run ({machine.describe()}: "
                f"at most {machine.workers_per_run}, {WORKERS_PER_CORE} per core)")
    total = worker_count * max_parallel
    if total > machine.workers_at_once:
        return (f"{worker_count} workers x {max_parallel} runs at once = {total} workers is more than this "
                f"machine's memory holds ({machine.describe()}: at most {machine.workers_at_once} at "
                f"~{WORKER_MB} MB each)")
    return None


def worker_hint(machine: Machine | None = None) -> str:
    machine = machine or Machine.current()
    return (f"use at most {machine.workers_per_run} workers per run and {machine.workers_at_once} in "
            "total (worker_count x max_parallel), or run on Azure ML (runtime.backend: azure)")


LLM_WORKERS = 16  # LLM-bound flow, no quota known: workers mostly wait on the network
ASSUMED_CALL_SEC = 2.0  # with a quota: requests/s x a typical call's latency keeps it busy
MAX_LLM_WORKERS = 64
AUTO_WORKER_MB = 100  # resident memory of one forked line worker, with headroom (measured 40-80 MB)
AUTO_MEMORY_SHARE = 0.5  # of the memory available now


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
        wanted = min(wanted, max(1, int(memory_mb * AUTO_MEMORY_SHARE / AUTO_WORKER_MB)))
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
