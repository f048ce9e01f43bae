"""Evaluation runs in a workspace (`evaluations/runs/`): one JSON per evaluation run, keyed by content.

Written atomically once an evaluation finished, so a second identical `run evaluate` reuses
it and an interrupted one resumes. Failed evaluations are recorded but never reused.
"""

from __future__ import annotations

import json
from pathlib import Path

from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.workspace.files import atomic_write_json


class EvaluationStore:
    def __init__(self, workspace):
        self.root = workspace.evaluation_runs_dir

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def find(self, key: str) -> EvalOutcome | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if data.get("status") != "completed":
            return None
        return EvalOutcome(**{k: v for k, v in data.items() if k in EvalOutcome.__dataclass_fields__})

    def save(self, outcome: EvalOutcome) -> None:
        atomic_write_json(self._path(outcome.key), outcome.as_dict())
