"""evaluate: score an experiment's runs, rank the variants, test the gates, write the reports.

This module only orchestrates; the work lives in `genaiops.evaluation`:
experiment (ledger) -> evaluator runs, reused by content key (`evaluation.evaluators`) -> summary
with metrics, leaderboard and best variant (`evaluation.build`) -> gates on the best variant,
absolute and paired regression vs a baseline summary (`evaluation.gates`, `evaluation.baseline`)
-> one report folder (`reports`; summary.json is also the baseline format) + the best-variant
pointer (`Workspace.best_pointer`) that deploy promotes.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from genaiops.errors import GenaiopsError
from genaiops.evaluation.runs import completed_runs, load_experiment_or_fail
from genaiops.evaluation.summary import Summary
from genaiops.phases.context import PhaseContext
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.integrity import seal
from genaiops.workspace.ledger import ExperimentRecord


@dataclass
class EvaluateOptions:
    experiment: str = "latest"
    baseline: str | None = None  # path to summary.json (or its folder) | experiment id | "previous"
    report_dir: Path | None = None
    force: bool = False
    max_parallel: int | None = None
    force_data_mode: bool = False  # evaluate from ledger outputs even if the promptflow run exists
    write_reports: bool = True
    update_best: bool = True  # point deploy's `best` at this evaluation's best variant


def new_evaluation_id(use_case: str) -> str:
    return time.strftime(f"{use_case}-eval-%Y%m%d-%H%M%S-", time.gmtime()) + hashlib.sha256(
        str(time.time_ns()).encode()).hexdigest()[:6]


def run_evaluate(ctx: PhaseContext, options: EvaluateOptions) -> Summary:
    from genaiops.evaluation.baseline import baseline_ref
    from genaiops.evaluation.gates import check_gates, verdict

    config = ctx.config
    started = time.time()
    ledger = ctx.workspace.ledger()
    experiment = load_experiment_or_fail(ledger, config.use_case, options.experiment)
    changes = _checkout_changes(ctx, experiment, explicit=options.experiment != "latest")
    baseline = _load_baseline(ctx, options, experiment.id) if options.baseline else None
    summary = evaluate_experiment(ctx, experiment, options)
    summary.checkout_changes = changes or None
    if baseline is not None:
        summary.baseline = baseline_ref(baseline, options.baseline)
    summary.gates = check_gates(config.gates, summary, baseline, config.evaluation)
    summary.verdict = verdict(summary.gates, summary.problems)
    summary.duration_s = round(time.time() - started, 3)
    summary.recorded_digest = summary.digest()
    if options.write_reports:
        from genaiops.evaluation.store import SummaryStore
        from genaiops.reports import write_reports

        folder = Path(options.report_dir) if options.report_dir else \
            ctx.workspace.report_dir(config.use_case, summary.id)
        summary.report_dir = str(folder)
        write_reports(summary, folder, hide=config.canaries())
        SummaryStore(ctx.workspace).keep(summary)  # what `run build` verifies a summary.json against
        if options.update_best:
            _write_best_pointer(ctx, summary)
    return summary


def _checkout_changes(ctx: PhaseContext, experiment: ExperimentRecord, *,
                      explicit: bool) -> list[str]:
    """What the checkout would run differently from `experiment` (`experiment.checkout_changes`).
    The latest experiment of another flow, config or data is refused (exit 2): a PASS for it would
    be taken for this checkout's. One named with --experiment is evaluated as it is, and every
    report says so (and names the flow hash it ran)."""
    from genaiops.errors import UsageError
    from genaiops.phases.experiment import checkout_changes

    records, _problems = completed_runs(ctx.workspace.ledger(), experiment)
    changes = checkout_changes(ctx, experiment, records)
    if changes and not explicit:
        use_case, env = ctx.config.use_case, ctx.config.env
        raise UsageError(
            f"the latest experiment {experiment.id} was not made from this checkout: "
            + "; ".join(changes),
            hint=f"run `genaiops run experiment -u {use_case}{' -e ' + env if env else ''}` first; "
                 f"or evaluate that experiment as it is with --experiment {experiment.id} "
                 "(its reports then name the flow hash it ran)")
    return changes


def _load_baseline(ctx: PhaseContext, options: EvaluateOptions, current_experiment: str) -> Summary:
    """A saved summary as it stands, or an earlier experiment evaluated now (reusing runs)."""
    from genaiops.evaluation.baseline import baseline_experiment, saved_baseline

    saved = saved_baseline(options.baseline)
    if saved is not None:
        return saved
    experiment = baseline_experiment(ctx.workspace.ledger(), ctx.config.use_case, options.baseline,
                                     current_experiment=current_experiment)
    return evaluate_experiment(ctx, experiment, replace(options, baseline=None, write_reports=False))


def _write_best_pointer(ctx: PhaseContext, summary: Summary) -> None:
    """What the deploy phase promotes: the best variant, bound to flow hash and summary digest."""
    if summary.best is None:
        return
    config = ctx.config
    atomic_write_json(ctx.workspace.best_pointer(config.use_case), seal({
        **summary.best.model_dump(), "use_case": config.use_case, "env": config.env,
        "evaluation_id": summary.id, "experiment_id": summary.experiment_id,
        "verdict": summary.verdict, "summary_digest": summary.recorded_digest,
        "report_dir": summary.report_dir}))


def evaluate_experiment(ctx: PhaseContext, experiment: ExperimentRecord,
                        options: EvaluateOptions) -> Summary:
    """Run (or reuse) every evaluation of one experiment and build the summary without gates."""
    from genaiops.evaluation.build import build_summary
    from genaiops.evaluation.evaluators import make_adapter, plan_evaluations, run_evaluations
    from genaiops.evaluation.store import EvaluationStore
    from genaiops.execution.capacity import parallel_runs
    from genaiops.gateway import EVALUATOR_POOL
    from genaiops.gateway.llm_session import output_settings

    config = ctx.config
    ledger = ctx.workspace.ledger()
    evaluation_id = new_evaluation_id(config.use_case)
    records, problems = completed_runs(ledger, experiment)
    adapters = {e.name: make_adapter(config, e, ctx.engine_named(e.engine) if e.engine else None,
                                     link_runs=e.engine == ctx.engine.name,
                                     force_data_mode=options.force_data_mode)
                for e in config.evaluators}
    flow_engines = list({e.engine: ctx.engine_named(e.engine) for e in config.evaluators
                         if e.flow}.values())  # the engines that run evaluation flows
    tasks = plan_evaluations(config, records, adapters, output_settings(config) if flow_engines else {})
    store = EvaluationStore(ctx.workspace)
    calls_llm = [t for t in tasks if (t.evaluator.flow or getattr(adapters[t.evaluator.name],
                                                                  "calls_llm", False))
                 and (options.force or not t.reusable or store.find(t.key) is None)]
    to_run = [t for t in calls_llm if t.evaluator.flow]
    max_parallel = parallel_runs(options.max_parallel, config.runtime.max_parallel, max(1, len(to_run)))
    for name in dict.fromkeys(t.evaluator.engine for t in to_run):  # nothing to run: no simulator,
        ctx.engine_named(name).prewarm(max_parallel)  # no connections, no engine import
    with ctx.llm(flow_engines or None, pool=EVALUATOR_POOL, fail_on_miss=False) if calls_llm \
            else contextlib.nullcontext() as session:
        from genaiops.gateway.llm_session import replay_misses

        already = len(ctx.cassette.misses) if ctx.cassette is not None else 0
        for adapter in adapters.values():  # LLM judges call the session's (gateway) endpoints
            if session is not None and getattr(adapter, "calls_llm", False):
                adapter.bind(session.endpoints)
        try:
            outcomes = run_evaluations(tasks, adapters, ledger, store, evaluation_id=evaluation_id,
                                       max_parallel=max_parallel, force=options.force,
                                       show_progress=ctx.show_progress)
        except GenaiopsError:
            replay_misses(ctx.cassette, already)  # the cause, when it is that
            raise
        replay_misses(ctx.cassette, already, where=[_missed_lines(o) for o, _ in outcomes
                                                    if any(_missed(r) for r in o.rows)])
    return build_summary(config, evaluation_id=evaluation_id, experiment_id=experiment.id,
                         records=records, outcomes=outcomes, problems=problems, ledger=ledger)


def _missed(row: dict) -> bool:
    return "no recorded answer" in (row.get("error") or "")


def _missed_lines(outcome) -> str:
    """`evaluation run <name> (evaluator judge on <variant>/<dataset>): line 0, line 3 (node
    judge)`: where an evaluation's lines failed, for a replay miss's message."""
    failed = [row for row in outcome.rows if _missed(row)]
    lines = ", ".join(f"line {row['line']}" for row in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    nodes = sorted({row["node"] for row in failed if row.get("node")})
    node = f" (node {', '.join(nodes)})" if nodes else ""
    return (f"evaluation run {outcome.engine_run or outcome.key[:8]} (evaluator "
            f"{outcome.evaluator} on {outcome.variant}/{outcome.dataset}): {lines}{more}{node}")


__all__ = ["EvaluateOptions", "evaluate_experiment", "run_evaluate"]
