"""The one scheduling loop: run independent units of work `max_parallel` at a time, with progress.

Experiment batches and evaluation runs both go through `run_concurrently`, so concurrency,
progress display and error propagation behave the same everywhere. Work runs in threads: each
unit mostly waits on a child process (a promptflow worker) or on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from genaiops.execution.progress import Progress

T = TypeVar("T")
R = TypeVar("R")

Report = Callable[[int], None]  # units of this task finished so far (lines, runs)


@dataclass(frozen=True)
class Unit(Generic[T]):
    """One unit of work: what to run, a short label for progress, and its size in progress units."""

    item: T
    label: str
    size: int = 1


def run_concurrently(units: Sequence[Unit[T]], work: Callable[[T, Report], R], *, max_parallel: int,
                     title: str, show_progress: bool = True, unit: str = "lines") -> list[R]:
    """`work(item, report)` for every unit, at most `max_parallel` at once; results in input order.

    The first exception raised by a unit propagates once the units already running have finished
    (their results are lost to the caller, but whatever they recorded themselves is kept).
    """
    if not units:
        return []
    progress = Progress(sum(u.size for u in units), title, enabled=show_progress, unit=unit)
    results: dict[int, R] = {}
    labels = _unique([u.label for u in units])

    def execute(index: int, unit: Unit[T]) -> tuple[int, R]:
        label = labels[index]
        progress.add_task(label, unit.size)
        result = work(unit.item, lambda done: progress.update(label, done))
        progress.update(label, unit.size)
        return index, result

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(units)))) as pool:
            futures = [pool.submit(execute, i, unit) for i, unit in enumerate(units)]
            for future in as_completed(futures):
                index, result = future.result()
                results[index] = result
    finally:
        progress.close()
    return [results[i] for i in range(len(units))]


def _unique(labels: list[str]) -> list[str]:
    """Progress keys must differ: a repeated label gets `#2`, `#3`, ..."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out
