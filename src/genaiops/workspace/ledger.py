"""The run ledger: which run = which flow hash, variant, dataset hash and settings.

One JSON record per run under `<state>/ledger/runs/<key>.json` plus its line outputs in
`<key>.outputs.jsonl`, each written atomically (temp file + rename). A record exists only once
its run finished, so an interrupted experiment resumes by re-running what has no record.
The run key is a hash of everything that changes a run's outputs, never of secrets.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genaiops.workspace.files import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_jsonl,
)

STATUS_COMPLETED = "completed"  # every line ran (failed lines are counted in the record)
STATUS_FAILED = "failed"  # the run itself could not complete


def run_key(identity: dict) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


@dataclass
class RunRecord:
    key: str
    use_case: str
    env: str | None
    experiment_id: str
    flow: str
    flow_kind: str
    flow_hash: str
    variant: str
    variant_spec: dict
    dataset: str
    dataset_source: str
    dataset_hash: str
    column_mapping: dict
    settings: dict  # connection/model settings that affect outputs; never secrets
    pf_run: str
    pf_output: str | None  # output name suffix inside a composite run ("" = plain run)
    status: str
    lines_total: int = 0
    lines_ok: int = 0
    lines_failed: int = 0
    duration_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    errors: list = field(default_factory=list)  # [{line, message}] first few, redacted
    started_at: float = 0.0
    finished_at: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class Ledger:
    """Run records and experiments in a workspace (`ledger/runs`, `ledger/experiments`)."""

    def __init__(self, workspace):
        self.runs_dir = workspace.runs_dir
        self.experiments_dir = workspace.experiments_dir

    def _record_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.json"

    def outputs_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.outputs.jsonl"

    def find(self, key: str) -> RunRecord | None:
        """A finished run with this key whose outputs are still there, else None."""
        path = self._record_path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if data.get("status") != STATUS_COMPLETED or not self.outputs_path(key).is_file():
            return None
        return RunRecord(**{k: v for k, v in data.items() if k in RunRecord.__dataclass_fields__})

    def save(self, record: RunRecord, line_results: list[dict]) -> None:
        """Outputs first, then the record: a record never points at missing outputs."""
        atomic_write_jsonl(self.outputs_path(record.key), line_results)
        atomic_write_json(self._record_path(record.key), record.as_dict())

    def read_outputs(self, key: str) -> list[dict]:
        return read_jsonl(self.outputs_path(key))

    # -- experiments ----------------------------------------------------------------------------
    def save_experiment(self, experiment: dict) -> Path:
        path = self.experiments_dir / f"{experiment['id']}.json"
        atomic_write_json(path, experiment)
        atomic_write_text(self.experiments_dir / f"latest-{experiment['use_case']}", experiment["id"])
        return path

    def load_experiment(self, use_case: str, experiment_id: str = "latest") -> dict | None:
        if experiment_id == "latest":
            pointer = self.experiments_dir / f"latest-{use_case}"
            if not pointer.is_file():
                return None
            experiment_id = pointer.read_text().strip()
        path = self.experiments_dir / f"{experiment_id}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def history(self, use_case: str) -> list[RunRecord]:
        records = []
        for path in sorted(self.runs_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
            if data.get("use_case") == use_case:
                records.append(RunRecord(**{k: v for k, v in data.items()
                                            if k in RunRecord.__dataclass_fields__}))
        return records


def new_experiment_id(use_case: str) -> str:
    return time.strftime(f"{use_case}-%Y%m%d-%H%M%S-", time.gmtime()) + hashlib.sha256(
        str(time.time_ns()).encode()).hexdigest()[:6]

