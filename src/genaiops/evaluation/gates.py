"""Quality gates on an evaluation summary: absolute thresholds and baseline regressions.

Gates judge the deploy candidate (the best variant). Both the summary and the baseline are the
`summary.json` format, so a saved summary from main is a baseline as it stands.

- absolute: `metric op threshold` on the metric's value; NaN / missing = fail;
- regression: the candidate's per-row scores paired by dataset line with the baseline's best
  variant; fails when a one-sided paired test (McNemar exact for pass/fail rows, paired
  bootstrap otherwise) finds the candidate worse than baseline minus `threshold` (the tolerated
  drop, >= 0) at level `alpha`;
- an absolute gate below its `min_samples` usable rows says "not enough samples" (status
  `insufficient`, reported as skipped) instead of guessing, and does not fail the verdict;
- a regression gate without a baseline is `skipped`. *Given* a baseline, a regression gate that
  cannot be judged - the baseline lacks the metric on that dataset, the dataset changed so rows
  cannot be paired, fewer than `min_samples` paired rows - **fails**: a comparison someone asked
  for and that silently did not happen would pass exactly the change it should have caught.
"""

from __future__ import annotations

import math
import operator

from genaiops.config.metric_names import BUILTIN
from genaiops.config.model import EvaluationSettings, Gate
from genaiops.evaluation.stats import as_number, paired_test
from genaiops.evaluation.summary import GateResult, MetricEntry, Summary, source_label

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
PASS, FAIL, INSUFFICIENT, SKIPPED = "pass", "fail", "insufficient", "skipped"


def gate_name(gate: Gate) -> str:
    return gate.label


def row_scores(summary: Summary, variant: str, entry: MetricEntry, *,
               by_row: bool = True) -> dict[str, float] | None:
    """{line: score} backing a metric entry, usable numbers only; None when it has no rows.
    With repeats (several calls per dataset row) and `by_row`, {row: mean over its calls}:
    repeats of a row are not independent pairs, so gates and compare pair rows."""
    if not entry.row_score:
        return None
    for block in summary.scores:
        if (block.variant, block.dataset, block.evaluator, block.eval_dataset, block.score) == (
                variant, entry.dataset, entry.evaluator, entry.eval_dataset, entry.row_score):
            values = {line: as_number(v) for line, v in block.rows.items()}
            usable = {line: v for line, v in values.items() if v is not None}
            if not by_row or block.repeats <= 1:
                return usable
            calls: dict[int, list[float]] = {}
            for line, value in usable.items():
                calls.setdefault(int(line) // block.repeats, []).append(float(value))
            return {str(row): sum(v) / len(v) for row, v in sorted(calls.items())}
    return None


def _value(entry: MetricEntry | None) -> float | None:
    value = None if entry is None else entry.value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def check_gates(gates, summary: Summary, baseline: Summary | None,
                settings: EvaluationSettings) -> list[GateResult]:
    candidate = summary.candidate
    results = []
    for gate in gates:
        if candidate is None:
            results.append(_result(gate, FAIL, "no deploy candidate: no variant has a primary "
                                               "metric value (see the problems above)"))
        elif gate.type == "regression":
            results.append(_regression(gate, summary, baseline, candidate, settings))
        else:
            results.append(_absolute(gate, summary, candidate))
    return results


def _result(gate: Gate, status: str, message: str, **extra) -> GateResult:
    return GateResult(name=gate_name(gate), metric=gate.metric, type=gate.type, op=gate.op,
                      threshold=gate.threshold, status=status, message=message, **extra)


def _available(summary: Summary, variant: str) -> str:
    names = sorted({e.metric for e in summary.metrics if e.variant == variant})
    return ", ".join(names) or "(none)"


def _gate_metric(gate: Gate, summary: Summary, variant: str):
    """(the metric entry a gate judges, None) - or (None, a failed result saying why there is none)."""
    entry, ambiguous = summary.resolve_metric(variant, gate.metric, gate.evaluator, gate.dataset)
    if ambiguous:
        return None, _result(gate, FAIL, ambiguous, variant=variant)
    if entry is None:
        return None, _result(gate, FAIL, f"metric {gate.metric!r} not reported for {variant}; "
                                         f"available: {_available(summary, variant)}", variant=variant)
    return entry, None


def _absolute(gate: Gate, summary: Summary, variant: str) -> GateResult:
    entry, failed = _gate_metric(gate, summary, variant)
    if failed:
        return failed
    value = _value(entry)
    if value is None:
        return _result(gate, FAIL, f"{gate.metric} is NaN for {variant} (no usable rows: "
                                   f"{entry.n_nan} NaN, {entry.n_error} errored)",
                       variant=variant)
    n = entry.n_valid
    if gate.min_samples and n is not None and n < gate.min_samples:
        return _result(gate, INSUFFICIENT, f"not enough samples: {n} usable row(s) < "
                                           f"min_samples {gate.min_samples}; "
                                           f"{gate.metric}={value:.4g} not judged",
                       value=value, variant=variant)
    judged = value if gate.judge == "value" else getattr(entry, gate.judge)
    if judged is None:
        return _result(gate, FAIL, f"{gate.metric} has no interval to judge its {gate.judge} on "
                                   f"({variant}); gate on the value instead", value=value,
                       variant=variant)
    ok = OPS[gate.op](judged, gate.threshold)
    interval = ""
    if entry.ci_low is not None and entry.ci_high is not None:
        interval = f" (CI {entry.ci_low:.4g}..{entry.ci_high:.4g})"
    verb = "meets" if ok else "fails"
    on = "" if gate.judge == "value" else f" on its {gate.judge} {judged:.4g}"
    return _result(gate, PASS if ok else FAIL,
                   f"{entry.metric}={value:.4g}{interval}{on} {verb} {gate.op} {gate.threshold:g} "
                   f"({variant}, {entry.dataset}; from {source_label(entry)}{_over(entry)})", value=value,
                   variant=variant)


def _over(entry) -> str:
    """The denominator a value is over (`evaluators.base.scored_rows`), and the rows left out."""
    if entry.n_valid is None or entry.evaluator == BUILTIN:
        return ""
    left_out = f", {entry.n_error} failed or errored not scored" if entry.n_error else ""
    return f"; over {entry.n_valid} of {entry.n} rows{left_out}"


def _regression(gate: Gate, summary: Summary, baseline: Summary | None, variant: str,
                settings: EvaluationSettings) -> GateResult:
    if baseline is None:
        return _result(gate, SKIPPED, "no baseline given (--baseline): regression not checked",
                       variant=variant)
    base_variant = baseline.candidate
    entry, failed = _gate_metric(gate, summary, variant)
    if failed:
        return failed
    base_entry = baseline.find_metric(base_variant, entry.metric, entry.evaluator,
                                      entry.dataset) if base_variant else None
    if base_entry is None:
        return _result(gate, FAIL, f"cannot judge the regression: the baseline has no "
                                   f"{gate.metric} on dataset {entry.dataset}; evaluate the rows the "
                                   f"baseline holds (its datasets: {_datasets(baseline)})",
                       value=_value(entry), variant=variant)
    value, base_value = _value(entry), _value(base_entry)
    if value is None:
        return _result(gate, FAIL, f"{gate.metric} is NaN for {variant}", variant=variant,
                       baseline=base_value)
    mine_hash = summary.datasets.get(entry.dataset)
    base_hash = baseline.datasets.get(base_entry.dataset)
    if mine_hash and base_hash and mine_hash != base_hash:
        return _result(gate, FAIL, f"cannot judge the regression: dataset {entry.dataset} changed "
                                   "since the baseline, so rows cannot be paired; evaluate the deployed "
                                   "flow on the new dataset and pass that summary as --baseline, or add "
                                   "new rows as a new dataset", value=value,
                       baseline=base_value, variant=variant)
    mine, base = row_scores(summary, variant, entry), row_scores(baseline, base_variant, base_entry)
    if mine is None or base is None:
        return _result(gate, FAIL, f"{gate.metric} has no per-row scores to pair (a regression "
                                   "gate needs a metric backed by row scores)", value=value,
                       variant=variant)
    lines = sorted(set(mine) & set(base), key=lambda x: int(x))
    min_samples = gate.min_samples or settings.min_samples
    if len(lines) < min_samples:
        return _result(gate, FAIL, f"cannot judge the regression: not enough samples: {len(lines)} "
                                   f"paired row(s) < min_samples {min_samples}; evaluate at least "
                                   f"{min_samples} rows the baseline holds", value=value,
                       baseline=base_value, variant=variant)
    higher = gate.op in (">=", ">")
    alpha = gate.alpha or settings.alpha
    test = paired_test([base[line] for line in lines], [mine[line] for line in lines],
                       higher_is_better=higher, margin=abs(gate.threshold))
    shown_base = base_value if base_value is None else round(base_value, 4)
    summary_text = (f"{gate.metric} {value:.4g} (from {source_label(entry)}) vs baseline "
                    f"{shown_base} ({base_variant}): change {test.delta:+.4f}, {test.method} "
                    f"p={test.p_value:.3g} over {test.n} pairs, {test.detail}")
    if test.p_value < alpha:
        return _result(gate, FAIL, f"regression: {summary_text} (p < alpha {alpha})", value=value,
                       baseline=base_value, test=test, variant=variant)
    return _result(gate, PASS, f"no significant regression: {summary_text}", value=value,
                   baseline=base_value, test=test, variant=variant)


def _datasets(summary: Summary) -> str:
    return ", ".join(sorted({e.dataset for e in summary.metrics if e.variant == summary.candidate})) or "(none)"


def verdict(results: list[GateResult], problems: list[str]) -> str:
    return "fail" if problems or any(r.status == FAIL for r in results) else "pass"
