"""Statistics for evaluation scores, on numpy/scipy and deterministic (fixed bootstrap seed).

- `aggregate(values)` turns per-row scores into a mean with a confidence interval, counting
  NaN / non-numeric rows and errored rows separately (never silently dropped);
- Wilson intervals (scipy) for pass/fail (0/1) scores, percentile bootstrap for continuous ones;
- paired tests for regression gates: McNemar exact (one-sided binomial test on the discordant
  pairs) for pass/fail pairs, paired bootstrap of the mean difference for continuous pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest

from genaiops.evaluation.summary import PairedTestResult

SEED = 20240601
BOOTSTRAP_SAMPLES = 2000
RESAMPLE_BLOCK_VALUES = 4_000_000  # values drawn at once: bounds memory on large datasets
ERROR = object()  # marker for a row whose evaluation (or experiment line) failed


def as_number(value) -> float | None:
    """A finite float, or None for anything that is not a usable score (NaN, text, None)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def is_binary(values: list[float]) -> bool:
    return bool(values) and all(v in (0.0, 1.0) for v in values)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): McNemar's exact one-sided p-value for k of n
    discordant pairs going the bad way."""
    if n == 0:
        return 1.0
    return float(binomtest(k, n, 0.5, alternative="greater").pvalue)


def bootstrap_means(values: list[float], samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = SEED) -> np.ndarray:
    """Means of `samples` resamples with replacement, drawn in blocks of whole resamples."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    block = max(1, RESAMPLE_BLOCK_VALUES // data.size)
    return np.concatenate([
        data[rng.integers(0, data.size, size=(min(block, samples - start), data.size))].mean(axis=1)
        for start in range(0, samples, block)])


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return (float(low), float(high))


def bootstrap_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    if not values:
        return (math.nan, math.nan)
    if len(set(values)) == 1:
        return (values[0], values[0])
    return _percentile_interval(bootstrap_means(values), confidence)


@dataclass
class Aggregate:
    mean: float  # NaN when no row has a usable score
    n: int  # rows expected
    n_valid: int
    n_nan: int  # rows whose score was NaN, missing or not a number
    n_error: int  # rows whose evaluation or experiment line failed
    ci_low: float
    ci_high: float
    method: str  # wilson | bootstrap | none

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else
                    (round(v, 6) if isinstance(v, float) else v)) for k, v in asdict(self).items()}


def aggregate(values: list, confidence: float = 0.95) -> Aggregate:
    """Mean + interval over the usable scores; `ERROR` entries and unusable values are counted."""
    errors = sum(1 for v in values if v is ERROR)
    numbers = [as_number(v) for v in values if v is not ERROR]
    valid = [v for v in numbers if v is not None]
    nan = len(numbers) - len(valid)
    if not valid:
        return Aggregate(math.nan, len(values), 0, nan, errors, math.nan, math.nan, "none")
    mean = sum(valid) / len(valid)
    if is_binary(valid):
        low, high = wilson(int(sum(valid)), len(valid), confidence)
        method = "wilson"
    else:
        low, high = bootstrap_ci(valid, confidence)
        method = "bootstrap"
    return Aggregate(mean, len(values), len(valid), nan, errors, low, high, method)


def paired_test(baseline: list[float], candidate: list[float], *, higher_is_better: bool = True,
                margin: float = 0.0, confidence: float = 0.95) -> PairedTestResult:
    """Is `candidate` worse than `baseline` by more than `margin` (allowed drop, >= 0)?

    Pass/fail pairs with no margin use McNemar's exact test on the discordant pairs; anything
    else a paired bootstrap of the mean difference (fixed seed, so reruns agree).
    """
    n = len(baseline)
    if not n:
        return PairedTestResult(method="paired_bootstrap", n=0, delta=math.nan, p_value=1.0,
                                ci_low=math.nan, ci_high=math.nan, detail="no pairs")
    sign = 1.0 if higher_is_better else -1.0
    changes = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    improvements = sign * changes  # > 0 = candidate better
    delta = float(changes.mean())
    if margin == 0 and is_binary(baseline) and is_binary(candidate):
        worse = int(np.count_nonzero(improvements < 0))
        better = int(np.count_nonzero(improvements > 0))
        low, high = bootstrap_ci(changes.tolist(), confidence)
        return PairedTestResult(method="mcnemar_exact", n=n, delta=delta,
                                p_value=binomial_tail(worse, worse + better), ci_low=low,
                                ci_high=high, detail=f"{worse} row(s) got worse, {better} better")
    means = bootstrap_means(improvements.tolist())
    # one-sided bootstrap p-value of H0: mean improvement >= -margin
    p_value = (int(np.count_nonzero(means >= -margin)) + 1) / (means.size + 1)
    low, high = sorted(sign * bound for bound in _percentile_interval(means, confidence))
    return PairedTestResult(method="paired_bootstrap", n=n, delta=delta, p_value=p_value,
                            ci_low=low, ci_high=high,
                            detail=f"mean change {delta:+.4f} over {n} paired row(s)")
