"""compare: run two use cases (two engines, or two flows) on the same dataset with the same
evaluators and decide, on paired rows, whether the candidate is not worse than the baseline by
more than a margin. The evidence a migration PR is approved on.

Each side goes through the unchanged experiment and evaluate phases (one variant each; runs and
evaluations are reused from the ledger, `--force` re-runs), its own gates included; then
`evaluation.parity` pairs the rows and tests non-inferiority per gated metric, and the reports
(`reports.comparison`) go to one folder with each side's usual evaluation reports beside them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genaiops.errors import RunFailed, UsageError
from genaiops.evaluation.comparison import PASS, Comparison, Side
from genaiops.evaluation.summary import Summary
from genaiops.phases.context import PhaseContext

if TYPE_CHECKING:
    from genaiops.phases.experiment import ExperimentRun


@dataclass
class CompareOptions:
    baseline_variant: str = "defaults"  # a selector that names exactly one variant run
    candidate_variant: str = "defaults"
    metrics: list[str] = field(default_factory=list)  # default: the baseline's primary metric
    margin: float | None = None  # default: the candidate's evaluation.parity_margin
    confidence: float | None = None  # default: the baseline's evaluation.confidence
    min_samples: int | None = None  # default: the baseline's evaluation.min_samples
    force: bool = False
    max_parallel: int | None = None
    report_dir: Path | None = None
    write_reports: bool = True


@dataclass
class _Evaluated:
    ctx: PhaseContext
    summary: Summary
    variant: str
    run: ExperimentRun  # the experiment's run


def new_comparison_id(candidate: str) -> str:
    return time.strftime(f"{candidate}-compare-%Y%m%d-%H%M%S-", time.gmtime()) + hashlib.sha256(
        str(time.time_ns()).encode()).hexdigest()[:6]


def run_compare(baseline: PhaseContext, candidate: PhaseContext,
                options: CompareOptions) -> Comparison:
    from genaiops.evaluation.parity import Pairing

    started = time.time()
    margin = _margin(candidate, options)
    settings = baseline.config.evaluation
    confidence = options.confidence or settings.confidence
    min_samples = options.min_samples or settings.min_samples
    metrics = options.metrics or [settings.primary_metric or "accuracy"]
    left = _evaluate_side(baseline, options.baseline_variant, options, "baseline")
    right = _evaluate_side(candidate, options.candidate_variant, options, "candidate")

    pairing = Pairing(left.summary, left.variant, right.summary, right.variant)
    problems = []
    if not pairing.datasets:
        raise UsageError(f"{baseline.config.use_case} and {candidate.config.use_case} ran no "
                         "dataset of the same content: there is nothing to pair",
                         hint="point both configs' datasets at the same file")
    results = [pairing.compare_metric(metric, margin=margin, confidence=confidence,
                                      min_samples=min_samples,
                                      higher_is_better=settings.higher_is_better)
               for metric in metrics]
    problems += _evaluator_differences(baseline, candidate, {r.evaluator for r in results})
    total, changed = pairing.changed_rows(results[0] if results else None)
    ok = not problems and all(r.status == PASS for r in results)
    comparison = Comparison(
        id=new_comparison_id(candidate.config.use_case),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        baseline=_side(left), candidate=_side(right),
        datasets={name: left.summary.datasets[name] for name in pairing.datasets},
        margin=margin, confidence=confidence, min_samples=min_samples, metrics=results,
        rows_total=total, rows_changed=changed, problems=problems,
        verdict="pass" if ok else "fail", duration_s=round(time.time() - started, 3))
    if options.write_reports:
        from genaiops.reports import write_reports
        from genaiops.reports.comparison import write_comparison_reports

        folder = Path(options.report_dir) if options.report_dir else \
            candidate.workspace.comparison_dir(candidate.config.use_case, comparison.id)
        for name, side in (("baseline", left), ("candidate", right)):
            side.summary.report_dir = str(folder / name)
            write_reports(side.summary, folder / name,
                          hide=baseline.config.canaries() | candidate.config.canaries())
        comparison.baseline.report_dir = left.summary.report_dir
        comparison.candidate.report_dir = right.summary.report_dir
        comparison.report_dir = str(folder)
        write_comparison_reports(comparison, folder)
    return comparison


def _margin(candidate: PhaseContext, options: CompareOptions) -> float:
    margin = options.margin if options.margin is not None else \
        candidate.config.evaluation.parity_margin
    if margin is None:
        raise UsageError("no non-inferiority margin: how much worse may the candidate be?",
                         hint="pass --margin (e.g. 0.02 = two points of accuracy) or set "
                              f"evaluation.parity_margin in {candidate.config.use_case}'s "
                              "experiment.yaml")
    return float(margin)


def _evaluate_side(ctx: PhaseContext, selector: str, options: CompareOptions,
                   role: str) -> _Evaluated:
    from genaiops.config.variants import select_variants
    from genaiops.evaluation.gates import check_gates, verdict
    from genaiops.phases.evaluate import EvaluateOptions, evaluate_experiment
    from genaiops.phases.experiment import ExperimentOptions, run_experiment

    config = ctx.config
    variants = select_variants(config, ctx.flow, selector)
    if len(variants) != 1:
        raise UsageError(f"--{role}-variant {selector!r} selects {len(variants)} variants of "
                         f"{config.use_case}; compare needs exactly one",
                         hint="name one, e.g. defaults or " + variants[0].label)
    result = run_experiment(ctx, ExperimentOptions(variants=selector, force=options.force,
                                                   max_parallel=options.max_parallel))
    try:
        result.raise_if_failed()
    except RunFailed as exc:  # no comparison without both sides' results: say which side failed
        raise RunFailed(f"the {role} {config.use_case}: {exc.message}", hint=exc.hint) from None
    experiment = ctx.workspace.ledger().load_experiment(config.use_case, result.experiment_id)
    summary = evaluate_experiment(ctx, experiment, EvaluateOptions(
        force=options.force, max_parallel=options.max_parallel, write_reports=False))
    summary.gates = check_gates(config.gates, summary, None, config.evaluation)
    summary.verdict = verdict(summary.gates, summary.problems)
    summary.recorded_digest = summary.digest()
    return _Evaluated(ctx, summary, variants[0].label, result.runs[0])


def _side(side: _Evaluated) -> Side:
    config, run = side.ctx.config, side.run
    return Side(use_case=config.use_case, env=config.env, engine=side.ctx.engine.name,
                engine_version=side.ctx.engine.version(), flow=config.flow_rel,
                flow_kind=config.flow_kind, flow_hash=run.flow_hash, variant=side.variant,
                experiment_id=side.summary.experiment_id, evaluation_id=side.summary.id,
                verdict=side.summary.verdict, llm=side.summary.llm)


def _evaluator_differences(baseline: PhaseContext, candidate: PhaseContext,
                           names: set[str]) -> list[str]:
    """Problems for each gated evaluator that is not the same on both sides (content, entry and
    the data it is given)."""
    problems = []
    for name in sorted(n for n in names if n):
        left, right = _evaluator_identity(baseline, name), _evaluator_identity(candidate, name)
        if right is None:
            problems.append(f"the candidate has no evaluator {name!r}: not the same evaluators")
        elif left != right:
            problems.append(f"evaluator {name!r} differs between the sides (code, flow or "
                            "evaluation data): the scores cannot be compared")
    return problems


def _evaluator_identity(ctx: PhaseContext, name: str) -> dict | None:
    from genaiops.evaluation.evaluators import make_adapter
    from genaiops.hashing import hash_file

    evaluator = next((e for e in ctx.config.evaluators if e.name == name), None)
    if evaluator is None:
        return None
    engine = ctx.engine_named(evaluator.engine) if evaluator.engine else None
    return {"content": make_adapter(ctx.config, evaluator, engine).content_identity(),
            "data": sorted(hash_file(d.source) for d in evaluator.datasets)}
