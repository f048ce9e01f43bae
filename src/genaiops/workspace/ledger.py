"""The run ledger: which run = which flow hash, variant, dataset hash and settings.

One JSON record per run under `<state>/ledger/runs/<key>.json` plus its line outputs in
`<key>.outputs.jsonl`, each written atomically (temp file + rename). A record exists only once
its run finished, so an interrupted experiment resumes by re-running what has no record.
The run key is a hash of everything that changes a run's outputs, never of secrets.

Records and experiments are sealed with their own hash and a record lists its outputs' hash
(`workspace.integrity`); a damaged record, outputs file or experiment is quarantined when read,
never trusted: the run is run again, the latest-experiment pointer is re-derived from the
experiment records, and an unrecoverable read says what to do.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genaiops.workspace.files import atomic_write_json, atomic_write_text, jsonl_text
from genaiops.workspace.integrity import (
    Damaged,
    StateDamaged,
    quarantine,
    read_sealed,
    seal,
    verify_file,
)

RERUN = "the run is run again by the next `genaiops run experiment`"

STATUS_COMPLETED = "completed"  # every line ran (failed lines are counted in the record)
STATUS_FAILED = "failed"  # the run itself could not complete


def run_key(identity: dict) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# fields records written before the engine boundary named after promptflow; read under their names
LEGACY_FIELDS = {"pf_run": "engine_run", "pf_output": "engine_output"}


def renamed_fields(data: dict) -> dict:
    """A record (run, evaluation run) read from disk with its legacy field names renamed; called
    after its seal was verified, so the seal still covers what was written."""
    return {LEGACY_FIELDS.get(key, key): value for key, value in data.items()}


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
    engine_run: str  # the engine's name for the batch run ("" when lines of several are merged)
    engine_output: str | None  # output name suffix inside a composite run ("" = plain run)
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
    outputs_sha256: str = ""  # of `<key>.outputs.jsonl`, verified whenever the outputs are read
    merged_runs: list = field(default_factory=list)  # engine runs whose lines it merges (retries)
    # what answered, as the LLM gateway saw it: {connection: {deployment: {"models": [...],
    # "fingerprints": [...]}}}; a reuse asks the endpoint first whether it still serves that model
    served: dict = field(default_factory=dict)
    repeats: int = 1  # lines per dataset row: line = row * repeats + repeat (dataset `repeats:`)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunRef:
    """A run as its experiment lists it: the run's record is the ledger's, by `key`."""

    key: str
    variant: str
    dataset: str
    reused: bool = False


@dataclass
class ExperimentRecord:
    """One `run experiment`: which runs (by key) it made or reused, and whether they passed."""

    id: str
    use_case: str
    env: str | None
    flow: str
    flow_kind: str
    variants: str  # the selector it ran (`defaults`, `all`, `grid`, names)
    started_at: float
    finished_at: float
    runs: list[RunRef]
    ok: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentRecord:
        """A record read from disk (its seal verified): fields it lacks take their default and
        ones this version does not know are left out, as for run records (the format has had
        no renamed field so far; one would be renamed here, like `renamed_fields`)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        runs = [RunRef(**{k: v for k, v in run.items() if k in RunRef.__dataclass_fields__})
                for run in data.get("runs") or []]
        return cls(**{"env": None, "flow": "", "flow_kind": "", "variants": "defaults",
                      "started_at": 0.0, "finished_at": 0.0, **known, "runs": runs})


class Ledger:
    """Run records and experiments in a workspace (`ledger/runs`, `ledger/experiments`)."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.runs_dir = workspace.runs_dir
        self.experiments_dir = workspace.experiments_dir

    def _record_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.json"

    def outputs_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.outputs.jsonl"

    def _load(self, path: Path) -> RunRecord | None:
        """The record at `path` if intact; a damaged one is quarantined with its outputs."""
        try:
            data = read_sealed(path)
        except Damaged as damage:
            quarantine(self.workspace, damage, path.with_name(f"{path.stem}.outputs.jsonl"),
                       recovery=RERUN)
            return None
        if data is None:
            return None
        data = renamed_fields(data)
        return RunRecord(**{k: v for k, v in data.items() if k in RunRecord.__dataclass_fields__})

    def find(self, key: str) -> RunRecord | None:
        """A finished run with this key whose record and outputs are intact, else None."""
        record = self._load(self._record_path(key))
        if record is None or record.status != STATUS_COMPLETED:
            return None
        try:
            verify_file(self.outputs_path(key), record.outputs_sha256)
        except Damaged as damage:
            quarantine(self.workspace, damage, self._record_path(key), recovery=RERUN)
            return None
        return record

    def save(self, record: RunRecord, line_results: list[dict]) -> None:
        """Outputs first, then the record that lists their hash: a record never points at
        missing or other outputs. Both are redacted first: a flow may return a secret it read."""
        from genaiops.secrets import redact_data

        text = jsonl_text(redact_data(line_results))
        record.outputs_sha256 = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        atomic_write_text(self.outputs_path(record.key), text)
        atomic_write_json(self._record_path(record.key), seal(redact_data(record.as_dict())))

    def read_outputs(self, key: str) -> list[dict]:
        """The run's line outputs, verified against its record; StateDamaged when they are not
        intact (quarantined: re-run the experiment)."""
        record = self._load(self._record_path(key))
        path = self.outputs_path(key)
        try:
            if record is None:
                raise Damaged(path, "its run record is missing or damaged")
            verify_file(path, record.outputs_sha256)
            text = path.read_text(encoding="utf-8")
        except Damaged as damage:
            quarantine(self.workspace, damage, self._record_path(key), recovery=RERUN)
            raise StateDamaged(f"the outputs of run {key[:8]} are damaged and were quarantined",
                               hint="re-run `genaiops run experiment` (intact runs are reused), "
                                    "then evaluate again") from None
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- experiments ----------------------------------------------------------------------------
    def _latest_path(self, use_case: str) -> Path:
        return self.experiments_dir / f"latest-{use_case}.json"

    def save_experiment(self, experiment: ExperimentRecord) -> Path:
        path = self.experiments_dir / f"{experiment.id}.json"
        atomic_write_json(path, seal(experiment.as_dict()))
        atomic_write_json(self._latest_path(experiment.use_case),
                          seal({"use_case": experiment.use_case, "id": experiment.id}))
        return path

    def experiment_ids(self, use_case: str) -> list[str]:
        """Ids of the use case's experiments, oldest first: by when the record was written (ids
        start with their UTC second only, and two experiments can share one)."""
        def written(path: Path) -> tuple[int, str]:
            try:
                return path.stat().st_mtime_ns, path.stem
            except OSError:
                return 0, path.stem

        return [p.stem for p in sorted(self.experiments_dir.glob(f"{use_case}-*.json"), key=written)]

    def _latest_id(self, use_case: str) -> str | None:
        pointer = self._latest_path(use_case)
        try:
            data = read_sealed(pointer)
        except Damaged as damage:
            newest = (self.experiment_ids(use_case) or [None])[-1]
            quarantine(self.workspace, damage, recovery=f"the latest experiment is taken from the "
                       f"newest experiment record instead ({newest or 'none'})")
            if newest:
                atomic_write_json(pointer, seal({"use_case": use_case, "id": newest}))
            return newest
        return None if data is None else str(data.get("id"))

    def load_experiment(self, use_case: str, experiment_id: str = "latest") -> ExperimentRecord | None:
        """The experiment record (None when there is none); StateDamaged when it is damaged."""
        if experiment_id == "latest":
            experiment_id = self._latest_id(use_case)
            if experiment_id is None:
                return None
        path = self.experiments_dir / f"{experiment_id}.json"
        try:
            data = read_sealed(path)
        except Damaged as damage:
            quarantine(self.workspace, damage, recovery="its runs stay in the ledger")
            raise StateDamaged(f"experiment {experiment_id} is damaged and was quarantined",
                               hint="re-run `genaiops run experiment` (intact runs are reused) "
                                    "or pass --experiment with another id") from None
        return None if data is None else ExperimentRecord.from_dict(data)

    def history(self, use_case: str) -> list[RunRecord]:
        """Every intact run record of the use case (damaged ones are quarantined on the way)."""
        records = []
        for path in sorted(self.runs_dir.glob("*.json")):
            record = self._load(path)
            if record is not None and record.use_case == use_case:
                records.append(record)
        return records


def new_experiment_id(use_case: str) -> str:
    return time.strftime(f"{use_case}-%Y%m%d-%H%M%S-", time.gmtime()) + hashlib.sha256(
        str(time.time_ns()).encode()).hexdigest()[:6]

