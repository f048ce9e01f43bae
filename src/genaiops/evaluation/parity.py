"""From two evaluated runs to a parity verdict: pair rows, test non-inferiority, diff the rows.

Both sides must have run the same dataset (paired by content hash, whatever its name) and scored
it with the same evaluator (checked by the caller); rows are paired by dataset line. Fail closed:
a metric one side does not report, a candidate row without a usable score where the baseline has
one, or fewer paired rows than `min_samples` fails the comparison with the reason.
"""

from __future__ import annotations

import math

from genaiops.evaluation.comparison import (
    FAIL,
    INSUFFICIENT,
    PASS,
    Estimate,
    MetricComparison,
    RowDiff,
    RowSide,
)
from genaiops.evaluation.gates import row_scores
from genaiops.evaluation.stats import non_inferiority
from genaiops.evaluation.summary import DrillCell, MetricEntry, Summary


def shared_datasets(baseline: Summary, candidate: Summary) -> dict[str, str]:
    """baseline dataset name -> candidate dataset name, for datasets of equal content."""
    by_hash = {digest: name for name, digest in candidate.datasets.items()}
    return {name: by_hash[digest] for name, digest in baseline.datasets.items() if digest in by_hash}


def _estimate(entry: MetricEntry | None) -> Estimate:
    if entry is None:
        return Estimate(value=None, ci_low=None, ci_high=None)
    return Estimate(value=entry.value, ci_low=entry.ci_low, ci_high=entry.ci_high)


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


class Pairing:
    """The two evaluated runs and the variant of each that is compared."""

    def __init__(self, baseline: Summary, base_variant: str, candidate: Summary, cand_variant: str):
        self.baseline, self.base_variant = baseline, base_variant
        self.candidate, self.cand_variant = candidate, cand_variant
        self.datasets = shared_datasets(baseline, candidate)

    def compare_metric(self, metric: str, *, margin: float, confidence: float, min_samples: int,
                       higher_is_better: bool) -> MetricComparison:
        base_entry = next((e for e in self.baseline.metrics if e.variant == self.base_variant
                           and e.metric == metric and e.dataset in self.datasets), None)
        cand_entry = None if base_entry is None else self.candidate.find_metric(
            self.cand_variant, metric, base_entry.evaluator, self.datasets[base_entry.dataset])

        def result(status: str, message: str, **fields) -> MetricComparison:
            values = {"method": "none", "n": 0, "n_unpaired": 0, "delta": None, "ci_low": None,
                      "ci_high": None, "p_value": None, "worse": 0, "better": 0, **fields}
            return MetricComparison(
                metric=metric, evaluator=base_entry.evaluator if base_entry else "",
                dataset=base_entry.dataset if base_entry else "", higher_is_better=higher_is_better,
                baseline=_estimate(base_entry), candidate=_estimate(cand_entry),
                confidence=confidence, margin=margin, status=status, message=message, **values)

        if base_entry is None:
            return result(FAIL, f"the baseline reports no {metric!r} on a dataset the candidate "
                                "also ran")
        if cand_entry is None:
            return result(FAIL, f"the candidate reports no {metric!r} from evaluator "
                                f"{base_entry.evaluator!r} on {base_entry.dataset}")
        base_rows = row_scores(self.baseline, self.base_variant, base_entry)
        cand_rows = row_scores(self.candidate, self.cand_variant, cand_entry)
        if base_rows is None or cand_rows is None:
            return result(FAIL, f"{metric} has no per-row scores to pair (compare needs a metric "
                                "backed by row scores)")
        lines = sorted(set(base_rows) & set(cand_rows), key=int)
        lost = sorted(set(base_rows) - set(cand_rows), key=int)
        unpaired = len(set(base_rows) ^ set(cand_rows))
        test = non_inferiority([base_rows[x] for x in lines], [cand_rows[x] for x in lines],
                               margin=margin, confidence=confidence,
                               higher_is_better=higher_is_better)
        fields = {"method": test.method, "n": test.n, "n_unpaired": unpaired,
                  "delta": _round(test.delta), "ci_low": _round(test.ci_low),
                  "ci_high": _round(test.ci_high), "p_value": _round(test.p_value),
                  "worse": test.worse, "better": test.better}
        shown = (f"{metric} {base_entry.value:.4g} -> {cand_entry.value:.4g}: change "
                 f"{test.delta:+.4f}, {confidence:.0%} CI {test.ci_low:+.4f}..{test.ci_high:+.4f} "
                 f"vs margin -{margin:g}; {test.method} p={test.p_value:.3g} over {test.n} pairs "
                 f"({test.worse} worse, {test.better} better)") if test.n else f"{metric}: no pairs"
        if lost:
            return result(FAIL, f"the candidate has no usable {metric} score on {len(lost)} row(s) "
                                f"the baseline scored (first: line {lost[0]}): errors count as "
                                f"failures here; {shown}", **fields)
        if test.n < min_samples:
            return result(INSUFFICIENT, f"not enough evidence: {test.n} paired row(s) < "
                                        f"min_samples {min_samples}; {shown}", **fields)
        if test.non_inferior:
            return result(PASS, f"non-inferior: {shown}", **fields)
        worst, best = ((test.ci_low, test.ci_high) if higher_is_better
                       else (-test.ci_high, -test.ci_low))  # as improvements
        if best < -margin:
            return result(FAIL, f"inferior: worse by more than the margin; {shown}", **fields)
        if best < 0:
            return result(FAIL, f"worse: significantly worse than the baseline, and not shown to "
                                f"be within the margin; {shown}", **fields)
        return result(FAIL, f"inconclusive: the interval reaches past the margin, so "
                            f"non-inferiority is not shown (more rows or a wider margin); "
                            f"{shown}", **fields)

    def changed_rows(self, first: MetricComparison | None) -> tuple[int, list[RowDiff]]:
        """(rows compared, rows whose outputs, scores or error differ) of the shared datasets."""
        base_cells = _cells(self.baseline, self.base_variant)
        cand_cells = _cells(self.candidate, self.cand_variant)
        scores = self._first_scores(first)
        total, changed = 0, []
        for base_name, cand_name in self.datasets.items():
            lines = sorted({line for ds, line in base_cells if ds == base_name}
                           | {line for ds, line in cand_cells if ds == cand_name})
            for line in lines:
                total += 1
                base, inputs_b = base_cells.get((base_name, line), (None, {}))
                cand, inputs_c = cand_cells.get((cand_name, line), (None, {}))
                left, right = _side(base), _side(cand)
                if left == right:
                    continue
                changed.append(RowDiff(dataset=base_name, line=line, inputs=inputs_b or inputs_c,
                                       baseline=left, candidate=right,
                                       change=_change(scores, line, first)))
        return total, changed

    def _first_scores(self, first: MetricComparison | None):
        if first is None or first.status == FAIL and first.n == 0:
            return None
        base = self.baseline.find_metric(self.base_variant, first.metric, first.evaluator,
                                         first.dataset)
        cand = self.candidate.find_metric(self.cand_variant, first.metric, first.evaluator,
                                          self.datasets.get(first.dataset))
        if base is None or cand is None:
            return None
        return (row_scores(self.baseline, self.base_variant, base, by_row=False) or {},
                row_scores(self.candidate, self.cand_variant, cand, by_row=False) or {})


def _cells(summary: Summary, variant: str) -> dict[tuple[str, int], tuple[DrillCell, dict]]:
    return {(row.dataset, row.line): (row.variants[variant], row.inputs) for row in summary.rows
            if variant in row.variants}


def _side(cell: DrillCell | None) -> RowSide:
    if cell is None:
        return RowSide(outputs=None, error="no result for this line", scores={})
    outputs = cell.outputs if isinstance(cell.outputs, dict) or cell.outputs is None \
        else {"output": cell.outputs}
    return RowSide(outputs=outputs, error=cell.error, scores=dict(cell.scores))


def _change(scores, line: int, first: MetricComparison | None) -> str:
    if scores is None:
        return "unscored"
    base, cand = scores[0].get(str(line)), scores[1].get(str(line))
    if base is None or cand is None:
        return "unscored"
    if base == cand:
        return "same score"
    better = cand > base if (first is None or first.higher_is_better) else cand < base
    return "better" if better else "worse"
