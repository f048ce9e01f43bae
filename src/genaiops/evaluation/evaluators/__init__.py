"""Evaluators: one protocol (`EvaluatorAdapter`), two adapters (promptflow evaluation flows,
plain Python functions); `plan_evaluations` keys each (evaluator dataset x experiment run) by
content and `run_evaluations` runs what is not in the store yet, concurrently."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed

from genaiops.config.model import ExperimentConfig
from genaiops.errors import ConfigError
from genaiops.evaluation.evaluators.base import (
    AlignedRow,
    EvalOutcome,
    EvalTask,
    EvaluatorAdapter,
    aligned_rows,
)
from genaiops.evaluation.evaluators.code import CodeEvaluator
from genaiops.evaluation.evaluators.flow import FlowEvaluator
from genaiops.hashing import hash_file
from genaiops.progress import Progress
from genaiops.workspace.evaluations import EvaluationStore
from genaiops.workspace.ledger import Ledger, RunRecord, run_key


def make_adapter(config: ExperimentConfig, evaluator, runner, *, force_data_mode=False) -> EvaluatorAdapter:
    if evaluator.code:
        return CodeEvaluator(config.repo_root, evaluator.code, evaluator.aggregate)
    return FlowEvaluator(evaluator.flow, runner, worker_count=config.runtime.worker_count,
                         line_timeout_sec=config.runtime.line_timeout_sec,
                         force_data_mode=force_data_mode)


def plan_evaluations(config: ExperimentConfig, records: list[RunRecord], adapters: dict,
                     settings: dict) -> list[EvalTask]:
    """Every evaluator dataset x every experiment run of the dataset it references."""
    tasks = []
    referenced = {r.dataset for r in records}
    for evaluator in config.evaluators:
        identity_base = adapters[evaluator.name].content_identity()
        for eval_dataset in evaluator.datasets:
            if eval_dataset.reference not in referenced:
                continue  # that dataset was not part of this experiment (e.g. --datasets)
            dataset_hash = hash_file(eval_dataset.source)
            for record in records:
                if record.dataset != eval_dataset.reference:
                    continue
                identity = {"evaluator": evaluator.name, "content": identity_base, "experiment_run": record.key,
                            "eval_dataset_hash": dataset_hash, "mapping": eval_dataset.mappings,
                            "settings": settings}
                tasks.append(EvalTask(run_key(identity), evaluator, eval_dataset, record, identity))
    if config.evaluators and not tasks:
        raise ConfigError("no evaluator dataset references a dataset of this experiment",
                          hint="set evaluators[].datasets[].reference to a dataset the experiment ran")
    return tasks


def run_evaluations(tasks: list[EvalTask], adapters: dict, ledger: Ledger, store: EvaluationStore,
                    *, evaluation_id: str, max_parallel: int = 2, force: bool = False,
                    show_progress: bool = True) -> list[tuple[EvalOutcome, bool]]:
    """[(outcome, reused)] in task order; pending tasks run `max_parallel` at a time."""
    found = {t.key: (None if force else store.find(t.key)) for t in tasks}
    pending = [t for t in tasks if found[t.key] is None]
    rows = {t.key: aligned_rows(t, ledger) for t in pending}  # config problems surface before running
    progress = Progress(len(pending), f"evaluate {evaluation_id}", enabled=show_progress and bool(pending))
    done: dict[str, EvalOutcome] = {}

    def execute(number: int, task: EvalTask) -> EvalOutcome:
        progress.add_task(task.key[:8], 1)
        outcome = adapters[task.evaluator.name].evaluate(task, rows[task.key], f"{evaluation_id}-e{number:02d}")
        store.save(outcome)
        progress.update(task.key[:8], 1)
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=max(1, max_parallel)) as pool:
            futures = [pool.submit(execute, n, t) for n, t in enumerate(pending)]
            for future in as_completed(futures):
                outcome = future.result()
                done[outcome.key] = outcome
    finally:
        progress.close()
    return [(found[t.key] or done[t.key], found[t.key] is not None) for t in tasks]


__all__ = ["AlignedRow", "CodeEvaluator", "EvalOutcome", "EvalTask", "EvaluationStore",
           "EvaluatorAdapter", "FlowEvaluator", "make_adapter", "plan_evaluations", "run_evaluations"]
