"""Statistics of repeated calls: each row run `n` times (`repeats: n`), its verdicts clustered.

Repeats of one row are not independent samples: they share the row's difficulty. Treating 5 x 40
calls as 200 independent ones makes intervals too narrow (a Wilson interval over all calls
covers the true pass rate far less often than it says when rows differ). So every statistic
here is computed per row first and resampled by row (cluster bootstrap):

- `pass_rate`: the mean of the rows' pass fractions, with a cluster-bootstrap interval;
- `pass_at_k`: the chance that at least one of k calls passes, per row by the unbiased
  estimator 1 - C(n-c, k) / C(n, k) (c passes of n), averaged over rows, same interval;
- `flaky_rows`: rows whose verdict varies across repeats;
- `paired_rates`: baseline against candidate over the same rows, the paired test on row means.

A row with errored repeats counts them as failures (an error is not a pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from genaiops.evaluation.stats import BOOTSTRAP_SAMPLES, SEED, paired_test


@dataclass(frozen=True)
class RateEstimate:
    value: float
    ci_low: float
    ci_high: float
    rows: int
    calls: int

    def as_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "rows": self.rows, "calls": self.calls}


def _row_matrix(outcomes: dict[str, list[float]]) -> list[np.ndarray]:
    return [np.asarray([1.0 if v else 0.0 for v in values]) for values in outcomes.values()
            if len(values)]


def cluster_bootstrap(row_values: np.ndarray, confidence: float = 0.95,
                      samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of the mean of per-row values, resampling whole rows."""
    if row_values.size == 0:
        return (math.nan, math.nan)
    if np.all(row_values == row_values[0]):
        return (float(row_values[0]), float(row_values[0]))
    rng = np.random.default_rng(seed)
    means = row_values[rng.integers(0, row_values.size, size=(samples, row_values.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return (float(low), float(high))


def pass_rate(outcomes: dict[str, list[float]], confidence: float = 0.95) -> RateEstimate:
    """The pass rate over rows (each row's pass fraction over its repeats), clustered by row."""
    rows = _row_matrix(outcomes)
    per_row = np.asarray([r.mean() for r in rows])
    low, high = cluster_bootstrap(per_row, confidence)
    return RateEstimate(float(per_row.mean()) if rows else math.nan, low, high, len(rows),
                        sum(r.size for r in rows))


def row_pass_at_k(passes: int, n: int, k: int) -> float:
    """Unbiased pass@k of one row with `passes` of `n` calls passing (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} repeats per row, not {n}")
    if n - passes < k:
        return 1.0
    return 1.0 - math.comb(n - passes, k) / math.comb(n, k)


def pass_at_k(outcomes: dict[str, list[float]], k: int, confidence: float = 0.95) -> RateEstimate:
    """The chance that at least one of `k` calls of a row passes, over rows, clustered by row."""
    rows = _row_matrix(outcomes)
    per_row = np.asarray([row_pass_at_k(int(r.sum()), r.size, k) for r in rows])
    low, high = cluster_bootstrap(per_row, confidence)
    return RateEstimate(float(per_row.mean()) if rows else math.nan, low, high, len(rows),
                        sum(r.size for r in rows))


def flaky_rows(outcomes: dict[str, list[float]]) -> list[dict]:
    """Rows whose verdict is not the same in every repeat, least stable first."""
    found = []
    for row, values in outcomes.items():
        verdicts = [1 if v else 0 for v in values]
        if 0 < sum(verdicts) < len(verdicts):
            found.append({"row": row, "passed": sum(verdicts), "repeats": len(verdicts),
                          "pass_rate": sum(verdicts) / len(verdicts)})
    return sorted(found, key=lambda f: (abs(f["pass_rate"] - 0.5), str(f["row"])))


def paired_rates(baseline: dict[str, list[float]], candidate: dict[str, list[float]], *,
                 higher_is_better: bool = True, margin: float = 0.0, confidence: float = 0.95):
    """Candidate against baseline over the rows both have: the paired test on row pass rates."""
    common = [row for row in baseline if row in candidate and baseline[row] and candidate[row]]
    base = [float(np.mean([1.0 if v else 0.0 for v in baseline[row]])) for row in common]
    cand = [float(np.mean([1.0 if v else 0.0 for v in candidate[row]])) for row in common]
    return paired_test(base, cand, higher_is_better=higher_is_better, margin=margin,
                       confidence=confidence)
