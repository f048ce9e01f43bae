"""Plain Python evaluators: `code: path/file.py:function` (+ optional `aggregate: function`).

The function gets one row's mapped values as keyword arguments and returns a number or a dict
of scores; `aggregate` gets the list of row results and returns a dict of metrics. They run in
this process (they are cheap and import no promptflow); an exception is that row's error.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import threading
import time
from pathlib import Path

from genaiops.engines import python_reads
from genaiops.engines.base import FlowReads
from genaiops.errors import ConfigError
from genaiops.evaluation.evaluators.base import (
    AlignedRow,
    EvalOutcome,
    EvalTask,
    score_rows,
    scores_of,
)
from genaiops.hashing import hash_file
from genaiops.secrets import redact

_LOCK = threading.Lock()


class CodeEvaluator:
    def __init__(self, repo_root: Path, code: str, aggregate: str | None = None):
        file, _, self.function = code.rpartition(":")
        self.file = (Path(repo_root) / file).resolve()
        self.code = code
        self.aggregate_name = aggregate

    def content_identity(self) -> dict:
        return {"kind": "code", "code_hash": hash_file(self.file), "entry": self.code,
                "aggregate": self.aggregate_name}

    def engine_version(self) -> str:
        return f"python=={platform.python_version()}"  # a code evaluator runs in this interpreter

    def reads(self) -> FlowReads:
        """A code evaluator runs in this process: what its file reads from the environment."""
        found = python_reads(self.file.read_text(encoding="utf-8"), self.file.name)
        return FlowReads(variables=found.variables, unknown=found.unknown)

    def _load(self):
        with _LOCK:  # module import is not thread safe per name
            name = f"genaiops_code_evaluator_{self.content_identity()['code_hash'][:16]}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, self.file)
                module = importlib.util.module_from_spec(spec)
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:
                    raise ConfigError(f"code evaluator {self.code}: importing {self.file.name} failed: "
                                      f"{type(exc).__name__}: {exc}", hint="fix the module") from None
                sys.modules[name] = module
        missing = [n for n in (self.function, self.aggregate_name) if n and not callable(getattr(module, n, None))]
        if missing:
            raise ConfigError(f"code evaluator {self.code}: {self.file.name} has no function "
                              f"{', '.join(missing)}", hint="check the `code:` / `aggregate:` names")
        return getattr(module, self.function), (getattr(module, self.aggregate_name)
                                                if self.aggregate_name else None)

    def evaluate(self, task: EvalTask, rows: list[AlignedRow], name: str) -> EvalOutcome:
        started = time.monotonic()
        function, aggregate = self._load()
        out_rows, results = score_rows(
            task, rows, function, lambda result: scores_of(result, task.evaluator.name),
            lambda exc: redact(f"{type(exc).__name__}: {exc}")[:500])
        metrics, error = {}, None
        if aggregate is not None:
            try:
                metrics = dict(aggregate(results))
            except Exception as exc:
                error = redact(f"aggregate {self.aggregate_name} failed: {type(exc).__name__}: {exc}")
        return EvalOutcome(
            key=task.key, evaluator=task.evaluator.name, eval_dataset=task.eval_dataset.name,
            dataset=task.record.dataset, variant=task.record.variant, run_key=task.record.key,
            kind="code", mode="code", rows=out_rows, metrics=metrics,
            status="failed" if error else "completed", error=error,
            duration_s=round(time.monotonic() - started, 3))
