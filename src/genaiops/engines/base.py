"""What a runner is asked to do and what it returns, independent of where it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class BatchJob:
    """One promptflow batch run over one dataset. A composite flow computes several variants
    ("members") per line; member `i` reads outputs named `<output><suffix>`."""

    name: str  # promptflow run name, unique
    flow: str  # absolute path of the (staged) flow
    data: str  # absolute path of the dataset
    column_mapping: dict
    member_suffixes: list[str]  # "" for a plain (single-variant) run
    init: dict | None = None  # flex/prompty init parameters
    worker_count: int = 4
    line_timeout_sec: int = 120
    environment: dict = field(default_factory=dict)  # extra env for the run (never secrets)
    run: str | None = None  # an existing promptflow run to evaluate (`${run.outputs.x}` mappings)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LineResult:
    line: int
    ok: bool
    inputs: dict
    outputs: dict | None
    error: str | None = None
    latency_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class MemberResult:
    suffix: str
    lines: list[LineResult]


@dataclass
class BatchResult:
    name: str
    status: str  # completed | failed
    duration_s: float
    members: list[MemberResult]
    error: str | None = None  # why the whole run failed
    metrics: dict = field(default_factory=dict)  # aggregated metrics the flow logged (evaluation runs)


ProgressCallback = Callable[[int], None]  # lines finished so far


class Runner(Protocol):
    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult: ...
