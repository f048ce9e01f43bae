"""From evaluator outcomes and experiment run records to a `Summary` (gates not applied yet).

experiment runs + evaluator outcomes -> metric entries and row scores (scoring) -> leaderboard
and best variant (ranking) -> per-line drill-down; anything that keeps the verdict from passing
besides a gate (a run that did not complete, an evaluator that failed, no primary metric value)
is recorded as a problem.
"""

from __future__ import annotations

import time

from genaiops.config.model import ExperimentConfig
from genaiops.evaluation.drilldown import drill_down
from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.evaluation.ranking import best_variant, leaderboard, primary_problem
from genaiops.evaluation.scoring import builtin_metrics, outcome_metrics
from genaiops.evaluation.summary import (
    BUILTIN,
    SIMULATOR_LABEL,
    EvaluationInfo,
    EvaluationRun,
    FlakyRow,
    LlmInfo,
    Summary,
)
from genaiops.workspace.ledger import Ledger, RunRecord


def build_summary(config: ExperimentConfig, *, evaluation_id: str, experiment_id: str,
                  records: list[RunRecord], outcomes: list[tuple[EvalOutcome, bool]],
                  problems: list[str], ledger: Ledger) -> Summary:
    """`outcomes` are (outcome, reused) in task order; `problems` so far (runs not evaluated)."""
    settings = config.evaluation
    problems = problems + [f"evaluator {o.evaluator} on {o.variant}/{o.dataset} failed: {o.error}"
                           for o, _reused in outcomes if o.status != "completed"]
    metrics, scores, flaky = [], [], []
    repeats = {r.key: r.repeats or 1 for r in records}
    for outcome, _reused in outcomes:
        per_row = repeats.get(outcome.run_key, 1)  # experiment lines per dataset row
        entries, blocks, varying = outcome_metrics(outcome, settings.confidence,  # calls per row
                                                   per_row * (outcome.repeats or 1))
        metrics += entries
        scores += blocks
        flaky += [FlakyRow(variant=outcome.variant, dataset=outcome.dataset,
                           evaluator=outcome.evaluator, eval_dataset=outcome.eval_dataset,
                           score=f["score"], row=int(f["row"]),
                           lines=[int(f["row"]) * per_row, int(f["row"]) * per_row + per_row - 1],
                           passed=f["passed"], calls=f["repeats"], pass_rate=round(f["pass_rate"], 6))
                  for f in varying]
    for record in records:
        metrics += builtin_metrics(record, settings.confidence)
    primary, board = leaderboard(settings, metrics, records)
    best = best_variant(board, records)
    ambiguous = primary_problem(settings, metrics, primary, [r.variant for r in records]) \
        if primary else None
    if ambiguous:
        problems.append(ambiguous)
    elif best is None and records:
        names = sorted({m.metric for m in metrics if m.evaluator != BUILTIN})
        problems.append(f"no variant has a value for the primary metric {primary!r} "
                        f"(evaluator metrics: {', '.join(names) or 'none numeric'}); set "
                        "evaluation.primary_metric to one of them, or make the evaluator return "
                        "numbers")
    simulator = _uses_simulator(records)
    return Summary(
        id=evaluation_id, use_case=config.use_case, env=config.env, experiment_id=experiment_id,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        flow=config.flow_rel, flow_kind=config.flow_kind,
        llm=LlmInfo(simulator=simulator,
                    label=SIMULATOR_LABEL if simulator else "configured endpoint",
                    **_replayed(records)),
        evaluation=EvaluationInfo(primary_metric=primary,
                                  higher_is_better=settings.higher_is_better,
                                  confidence=settings.confidence, alpha=settings.alpha,
                                  min_samples=settings.min_samples),
        flow_hash=", ".join(sorted({r.flow_hash for r in records})) or None,
        datasets={r.dataset: r.dataset_hash for r in records},
        metrics=metrics, scores=scores,
        evaluations=[_evaluation_run(outcome, reused) for outcome, reused in outcomes],
        problems=problems, leaderboard=board, best=best, gates=[], verdict=None, baseline=None,
        rows=drill_down(records, [outcome for outcome, _reused in outcomes], ledger),
        **({"flaky": flaky} if flaky else {}))


def _uses_simulator(records: list[RunRecord]) -> bool:
    return any((s or {}).get("endpoint") == "simulator" for r in records
               for s in (r.settings or {}).values())


def _replayed(records: list[RunRecord]) -> dict:
    """`{mode: replay, cassette: <hash>}` when the runs answered from a cassette (one hash: the
    runs of one evaluation replay one use case's cassette), else nothing."""
    found = {(r.settings or {}).get("@llm", {}).get("cassette") for r in records
             if (r.settings or {}).get("@llm", {}).get("mode") == "replay"}
    if not found:
        return {}
    return {"mode": "replay", "cassette": ", ".join(sorted(h for h in found if h))}


def _evaluation_run(outcome: EvalOutcome, reused: bool) -> EvaluationRun:
    return EvaluationRun(key=outcome.key, evaluator=outcome.evaluator,
                         eval_dataset=outcome.eval_dataset, variant=outcome.variant,
                         dataset=outcome.dataset, kind=outcome.kind, mode=outcome.mode,
                         engine_run=outcome.engine_run, status=outcome.status, error=outcome.error,
                         duration_s=outcome.duration_s, reused=reused)
