"""How many local promptflow workers this machine can hold, so that one setting cannot exhaust it.

`runtime.worker_count` (or `--workers`) workers run per batch and `runtime.max_parallel` (or
`--max-parallel`) batches at once. LLM-bound workers mostly wait on the network, so several per
core are fine, but each is a process: about 140 MB resident, of which ~30 MB its own when forked
(measured with the sample flows; spawned line processes, as for prompty, own all of theirs).
Validation refuses

- more than `WORKERS_PER_CORE` workers per core in one run, and
- more than `MEMORY_SHARE` of the machine's memory for all workers at once, at `WORKER_MB` each.

The machine is what this process may use: its CPU affinity, and a cgroup memory limit when lower
than physical memory (containers, CI agents).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WORKERS_PER_CORE = 16
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


def worker_problem(worker_count: int, max_parallel: int, machine: Machine | None = None) -> str | None:
    """Why `worker_count` workers per run, `max_parallel` runs at once, is too much here; or None."""
    machine = machine or Machine.current()
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
