"""Evaluation runs in a workspace (`evaluations/runs/`): one JSON per evaluation run, keyed by content.

Written atomically (and sealed with its hash) once an evaluation finished, so a second identical
`run evaluate` reuses it and an interrupted one resumes. Failed evaluations are recorded but never
reused; a damaged record is quarantined and the evaluation runs again.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.secrets import redact_data
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.integrity import Damaged, quarantine, read_sealed, seal


class EvaluationStore:
    def __init__(self, workspace):
        self.workspace = workspace
        self.root = workspace.evaluation_runs_dir

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def find(self, key: str) -> EvalOutcome | None:
        try:
            data = read_sealed(self._path(key))
        except Damaged as damage:
            quarantine(self.workspace, damage, recovery="the evaluation runs again")
            return None
        if data is None or data.get("status") != "completed":
            return None
        return EvalOutcome(**{k: v for k, v in data.items() if k in EvalOutcome.__dataclass_fields__})

    def save(self, outcome: EvalOutcome) -> None:
        """Redacted before sealing: an evaluator may return a secret it read."""
        atomic_write_json(self._path(outcome.key), seal(redact_data(outcome.as_dict())))
