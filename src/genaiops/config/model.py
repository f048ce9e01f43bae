"""Typed view of a validated experiment config. Paths are absolute; `*_rel` keep the repo-relative form."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SIMULATOR_BASE = "simulator"  # `api_base: simulator` = the bundled loopback LLM simulator
SECRET_FIELDS = frozenset({"api_key"})


@dataclass(frozen=True)
class Connection:
    name: str
    type: str  # open_ai | azure_open_ai
    api_base: str
    api_key: str = ""
    api_version: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def uses_simulator(self) -> bool:
        return self.api_base == SIMULATOR_BASE

    def public(self) -> dict:
        """Settings safe to print or record: everything except secrets."""
        data = {"name": self.name, "type": self.type, "api_base": self.api_base}
        if self.api_version and self.type == "azure_open_ai":
            data["api_version"] = self.api_version
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class Dataset:
    name: str
    source: Path
    source_rel: str
    description: str = ""
    mappings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluatorDataset(Dataset):
    reference: str = ""


@dataclass(frozen=True)
class Evaluator:
    name: str
    datasets: tuple[EvaluatorDataset, ...]
    flow: Path | None = None
    flow_rel: str | None = None
    code: str | None = None  # "path/to/file.py:function"
    aggregate: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Variant:
    """A named parameter set for flex/prompty flows (DAG flows use node variants instead)."""

    name: str
    init: dict = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Retries:
    max_attempts: int = 5
    backoff_sec: float = 0.5


@dataclass(frozen=True)
class Runtime:
    backend: str = "local"
    worker_count: int = 4
    max_parallel: int = 4
    line_timeout_sec: int = 120
    failed_line_tolerance: float = 0
    retries: Retries = field(default_factory=Retries)


@dataclass(frozen=True)
class SimulatorSettings:
    rules: Path | None = None
    rules_rel: str | None = None
    latency_ms: float = 0
    port: int = 8765


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float
    name: str = ""
    type: str = "absolute"
    evaluator: str | None = None
    dataset: str | None = None
    min_samples: int | None = None
    alpha: float | None = None
    description: str = ""


@dataclass(frozen=True)
class EvaluationSettings:
    """How `run evaluate` ranks variants and tests gates (the `evaluation:` block)."""

    primary_metric: str | None = None  # None: the first metric of the first evaluator
    higher_is_better: bool = True
    evaluator: str | None = None
    dataset: str | None = None
    min_samples: int = 30
    alpha: float = 0.05
    confidence: float = 0.95


@dataclass(frozen=True)
class ExperimentConfig:
    use_case: str
    env: str | None
    repo_root: Path
    files: tuple[Path, ...]  # base config and overlay actually read
    name: str
    description: str
    flow: Path
    flow_rel: str
    flow_kind: str  # dag | flex | prompty
    connections: tuple[Connection, ...]
    datasets: tuple[Dataset, ...]
    evaluators: tuple[Evaluator, ...]
    variants: tuple[Variant, ...]
    runtime: Runtime
    simulator: SimulatorSettings
    prices: dict
    registry: dict
    gates: tuple[Gate, ...]
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise KeyError(name)

    def secrets(self) -> set[str]:
        """Secret values in play (for redaction)."""
        return {c.api_key for c in self.connections if c.api_key}

    def summary(self) -> dict:
        """A secret-free description for `--json` output and records."""
        return {
            "use_case": self.use_case,
            "env": self.env,
            "files": [str(f.relative_to(self.repo_root)) for f in self.files],
            "flow": self.flow_rel,
            "flow_kind": self.flow_kind,
            "connections": [c.public() for c in self.connections],
            "datasets": [{"name": d.name, "source": d.source_rel} for d in self.datasets],
            "evaluators": [
                {"name": e.name, "flow": e.flow_rel, "code": e.code,
                 "datasets": [{"name": d.name, "reference": d.reference, "source": d.source_rel}
                              for d in e.datasets]}
                for e in self.evaluators
            ],
            "variants": [v.name for v in self.variants],
            "gates": [f"{g.metric} {g.op} {g.threshold}" for g in self.gates],
        }
