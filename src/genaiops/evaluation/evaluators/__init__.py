"""Evaluators: one protocol (`EvaluatorAdapter`), three adapters (promptflow evaluation flows,
plain Python functions, azure-ai-evaluation classes); `plan_evaluations` keys each (evaluator dataset x experiment run) by
content and `run_evaluations` runs what is not in the store yet, concurrently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genaiops.config.model import ExperimentConfig
from genaiops.config.run_inputs import reuse_hint, run_inputs
from genaiops.errors import ConfigError
from genaiops.evaluation.evaluators.azure_ai import AzureAIEvaluator
from genaiops.evaluation.evaluators.base import (
    SCORED_ROWS,
    AlignedRow,
    EvalOutcome,
    EvalTask,
    EvaluatorAdapter,
    aligned_rows,
)
from genaiops.evaluation.evaluators.code import CodeEvaluator
from genaiops.evaluation.evaluators.flow import FlowEvaluator
from genaiops.execution.scheduling import Unit, run_concurrently
from genaiops.hashing import hash_file
from genaiops.notices import notice
from genaiops.workspace.ledger import Ledger, RunRecord, run_key

if TYPE_CHECKING:
    from genaiops.evaluation.store import EvaluationStore


def make_adapter(config: ExperimentConfig, evaluator, engine, *, link_runs: bool = True,
                 force_data_mode=False) -> EvaluatorAdapter:
    """`engine` runs an evaluation flow; `link_runs`: it also ran the experiment, so its runs
    may be referenced instead of copying their outputs."""
    if evaluator.code:
        return CodeEvaluator(config.repo_root, evaluator.code, evaluator.aggregate)
    if evaluator.kind == "azure_ai_evaluation":
        from genaiops.gateway.llm_session import output_settings

        connection = next((c for c in config.connections if c.name == evaluator.connection), None)
        return AzureAIEvaluator(evaluator.class_name, init=evaluator.init, connection=connection,
                                connection_identity=output_settings(config).get(evaluator.connection),
                                model=evaluator.model)
    from genaiops.gateway.llm_session import engine_retries

    return FlowEvaluator(evaluator.flow, engine, worker_count=config.runtime.worker_count,
                         connections=config.connections,
                         line_timeout_sec=config.runtime.line_timeout_sec,
                         batch_timeout_sec=config.runtime.batch_timeout_sec,
                         force_data_mode=force_data_mode or not link_runs,
                         boundary=config.repo_root, init=evaluator.init,
                         environment_variables=dict(config.environment_variables),
                         environment=engine.run_environment(engine_retries(config)))


def plan_evaluations(config: ExperimentConfig, records: list[RunRecord], adapters: dict,
                     settings: dict) -> list[EvalTask]:
    """Every evaluator dataset x every experiment run of the dataset it references, keyed by
    everything that changes its scores: the evaluator's content and what it reads beyond its
    files (`run_inputs`), the experiment run's outputs, the evaluator dataset and mapping."""
    tasks = []
    referenced = {r.dataset for r in records}
    for evaluator in config.evaluators:
        adapter = adapters[evaluator.name]
        identity_base = adapter.content_identity()
        inputs = run_inputs(config, adapter.reads(), adapter.engine_version())
        if not inputs.reusable:
            notice(f"evaluator {evaluator.name} is run again, not reused: "
                   + "; ".join(inputs.not_reusable) + f" (fix: {reuse_hint(config)})")
        for eval_dataset in evaluator.datasets:
            if eval_dataset.reference not in referenced:
                continue  # that dataset was not part of this experiment (e.g. --datasets)
            dataset_hash = hash_file(eval_dataset.source)
            for record in records:
                if record.dataset != eval_dataset.reference:
                    continue
                identity = {"evaluator": evaluator.name, "content": identity_base,
                            "experiment_run": record.key,
                            "experiment_outputs": record.outputs_sha256,
                            "eval_dataset_hash": dataset_hash, "mapping": eval_dataset.mappings,
                            "key_column": eval_dataset.key_column,
                            "settings": settings, "inputs": inputs.identity, "scored": SCORED_ROWS,
                            **({"repeats": evaluator.repeats} if evaluator.repeats > 1 else {})}
                tasks.append(EvalTask(run_key(identity), evaluator, eval_dataset, record, identity,
                                      reusable=inputs.reusable))
    if config.evaluators and records and not tasks:  # (no records: the problems say why)
        raise ConfigError("no evaluator dataset references a dataset of this experiment",
                          hint="set evaluators[].datasets[].reference to a dataset the "
                               "experiment ran")
    return tasks


def run_evaluations(tasks: list[EvalTask], adapters: dict, ledger: Ledger, store: EvaluationStore,
                    *, evaluation_id: str, max_parallel: int = 2, force: bool = False,
                    show_progress: bool = True) -> list[tuple[EvalOutcome, bool]]:
    """[(outcome, reused)] in task order; pending tasks run `max_parallel` at a time."""
    found = {t.key: (None if force or not t.reusable else store.find(t.key)) for t in tasks}
    pending = [t for t in tasks if found[t.key] is None]
    rows = {t.key: aligned_rows(t, ledger) for t in pending}  # config problems surface first

    def execute(item: tuple[int, EvalTask], _report) -> EvalOutcome:
        number, task = item
        adapter = adapters[task.evaluator.name]
        outcome = adapter.evaluate(task, rows[task.key], f"{evaluation_id}-e{number:02d}")
        outcome.repeats = task.evaluator.repeats
        store.save(outcome)
        return outcome

    units = [Unit((number, task), task.key[:8]) for number, task in enumerate(pending)]
    outcomes = run_concurrently(units, execute, max_parallel=max_parallel, unit="runs",
                                title=f"evaluate {evaluation_id}", show_progress=show_progress)
    done = {outcome.key: outcome for outcome in outcomes}
    return [(found[t.key] or done[t.key], found[t.key] is not None) for t in tasks]


__all__ = ["AlignedRow", "AzureAIEvaluator", "CodeEvaluator", "EvalOutcome", "EvalTask", "EvaluatorAdapter",
           "FlowEvaluator", "make_adapter", "plan_evaluations", "run_evaluations"]
