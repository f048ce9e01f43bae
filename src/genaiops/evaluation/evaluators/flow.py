"""Evaluation flows run by the engine as a batch, linked to the experiment run (`run=`) when the
engine can still reference it.

`${run.outputs.y}` maps to `${run.outputs.y<suffix>}` when the experiment run computed several
variants (member suffixes). When that run cannot be referenced (another HOME, a CI agent that
only restored the ledger, an engine without run links), the run outputs come from the ledger
instead: a data file with the evaluator dataset's columns plus `__run__<y>` columns, mapped as
`${data.__run__y}`.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from genaiops.engines.base import BatchJob, FlowReads
from genaiops.evaluation.evaluators.base import (
    AlignedRow,
    EvalOutcome,
    EvalTask,
    error_rows,
    run_output_refs,
    scored_rows,
)
from genaiops.hashing import hash_tree
from genaiops.secrets import redact
from genaiops.workspace.sweep import owner_tag

FALLBACK_PREFIX = "__run__"


def run_mapping(mapping: dict, suffix: str) -> dict:
    refs = run_output_refs(mapping)
    return {k: (f"${{run.outputs.{refs[k]}{suffix}}}" if k in refs else v) for k, v in mapping.items()}


def data_mapping(mapping: dict) -> dict:
    refs = run_output_refs(mapping)
    return {k: (f"${{data.{FALLBACK_PREFIX}{refs[k]}}}" if k in refs else v) for k, v in mapping.items()}


def write_fallback_data(rows: list[AlignedRow], mapping: dict, path: Path) -> None:
    outputs = set(run_output_refs(mapping).values())
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            record = dict(row.data)
            for name in outputs:
                record[FALLBACK_PREFIX + name] = (row.run_outputs or {}).get(name)
            handle.write(json.dumps(record, default=str) + "\n")


class FlowEvaluator:
    def __init__(self, flow: Path, engine, *, worker_count: int | str = "auto", connections=(),
                 line_timeout_sec: int = 120, batch_timeout_sec: int | None = None,
                 force_data_mode: bool = False,
                 boundary: Path | None = None, init: dict | None = None,
                 environment_variables: dict | None = None, environment: dict | None = None):
        self.flow = Path(flow)
        self.boundary = boundary  # where the flow's links may point (the repository)
        self.root = self.flow if self.flow.is_dir() else self.flow.parent
        self.engine = engine
        self.worker_count = worker_count  # a number, or "auto" (per task, from its rows)
        self.connections = tuple(connections)
        self.line_timeout_sec = line_timeout_sec
        self.batch_timeout_sec = batch_timeout_sec
        self.force_data_mode = force_data_mode
        self.init = dict(init or {})
        self.environment_variables = dict(environment_variables or {})
        self.environment = dict(environment or {})  # the engine's retry policy for LLM judges

    def content_identity(self) -> dict:
        return {"kind": "flow", "engine": self.engine.name,
                "flow_hash": hash_tree(self.root, self.engine.cache_patterns, boundary=self.boundary),
                "entry": self.flow.name if self.flow.is_file() else "", "init": self.init}

    def engine_version(self) -> str:
        return f"{self.engine.name}:{self.engine.version()}"

    def reads(self) -> FlowReads:
        # the links validate accepted (anywhere in the repository) are read here too
        return self.engine.flow_reads(replace(self.engine.read_flow(self.flow), boundary=self.boundary))

    def _job(self, name: str, data: Path, column_mapping: dict, workers: int,
             run: str | None = None) -> BatchJob:
        return BatchJob(name=name, flow=str(self.flow), data=str(data), column_mapping=column_mapping,
                        member_suffixes=[""], init=self.init or None, worker_count=workers,
                        line_timeout_sec=self.line_timeout_sec,
                        batch_timeout_sec=self.batch_timeout_sec, run=run,
                        environment_variables=self.environment_variables,
                        environment=self.environment,
                        passed_variables=tuple(sorted(self.reads().variables)))

    def _workers(self, rows: int) -> int:
        from genaiops.execution.capacity import worker_count

        return worker_count(self.worker_count, rows, calls_llm=self.engine.read_flow(self.flow).calls_llm,
                            connections=self.connections)

    def evaluate(self, task: EvalTask, rows: list[AlignedRow], name: str) -> EvalOutcome:
        """promptflow's `run=` pairs evaluation row i with run line i, so rows joined on a key
        column are evaluated from the ledger's outputs instead (data mode)."""
        started = time.monotonic()
        workers = self._workers(len(rows))
        record, mapping = task.record, task.eval_dataset.mappings
        failed = error_rows(rows)
        scored = scored_rows(rows)  # the run= link would hand the evaluator the failed lines too
        use_run = (not self.force_data_mode and not task.eval_dataset.key_column and not failed
                   and (record.repeats or 1) == 1 and task.evaluator.repeats == 1
                   and self.engine.linkable_run(record.engine_run))
        if not scored:  # nothing to hand the engine (every row failed or lacks what it reads)
            return EvalOutcome(
                key=task.key, evaluator=task.evaluator.name, eval_dataset=task.eval_dataset.name,
                dataset=record.dataset, variant=record.variant, run_key=record.key, kind="flow", mode="data",
                rows=[{"line": row.line, "scores": {}, "error": failed[row.line]} for row in rows],
                duration_s=round(time.monotonic() - started, 3))
        with tempfile.TemporaryDirectory(prefix=f"genaiops-eval-{owner_tag()}-") as tmp:
            if use_run:
                job = self._job(name, task.eval_dataset.source,
                                run_mapping(mapping, record.engine_output or ""), workers, run=record.engine_run)
            else:
                data = Path(tmp) / "eval-data.jsonl"
                write_fallback_data(scored, mapping, data)
                job = self._job(name, data, data_mapping(mapping), workers)
            result = self.engine.run_batch(job)
        lines = {line.line: line for line in (result.members[0].lines if result.members else [])}
        position = {row.line: index for index, row in enumerate(scored)}  # evaluation line -> row
        out_rows = []
        for row in rows:
            line = lines.get(position.get(row.line, -1))
            if row.line in failed:
                out_rows.append({"line": row.line, "scores": {}, "error": failed[row.line]})
            elif line is None:
                out_rows.append({"line": row.line, "scores": {},
                                 "error": redact(result.error or "evaluation produced no result")[:500]})
            elif not line.ok:
                out_rows.append({"line": row.line, "scores": dict(line.outputs or {}),
                                 "error": redact(line.error or "evaluation line failed")[:500],
                                 **({"node": line.node} if line.node else {})})
            else:
                out_rows.append({"line": row.line, "scores": dict(line.outputs or {}), "error": None})
        ok = result.status == "completed" and bool(result.members)
        return EvalOutcome(
            key=task.key, evaluator=task.evaluator.name, eval_dataset=task.eval_dataset.name,
            dataset=record.dataset, variant=record.variant, run_key=record.key, kind="flow",
            mode="run" if use_run else "data", rows=out_rows, metrics=dict(result.metrics or {}),
            status="completed" if ok else "failed",
            error=None if ok else redact(result.error or "evaluation run failed")[:1000],
            engine_run=result.name, duration_s=round(time.monotonic() - started, 3))
