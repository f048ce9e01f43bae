"""Statistics for evaluation scores, stdlib only and deterministic (fixed bootstrap seed).

- `aggregate(values)` turns per-row scores into a mean with a confidence interval, counting
  NaN / non-numeric rows and errored rows separately (never silently dropped);
- Wilson intervals for pass/fail (0/1) scores, percentile bootstrap for continuous ones;
- paired tests for regression gates: McNemar exact (binomial) for pass/fail pairs, paired
  bootstrap of the mean difference for continuous pairs.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass

SEED = 20240601
BOOTSTRAP_SAMPLES = 2000
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


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def bootstrap_means(values: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    return sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def bootstrap_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    if not values:
        return (math.nan, math.nan)
    if len(set(values)) == 1:
        return (values[0], values[0])
    means = bootstrap_means(values)
    tail = (1 - confidence) / 2
    return (_quantile(means, tail), _quantile(means, 1 - tail))


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


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)


@dataclass
class PairedTest:
    method: str  # mcnemar_exact | paired_bootstrap
    n: int
    delta: float  # mean(candidate - baseline)
    p_value: float  # one-sided: evidence that the candidate is worse than baseline + margin
    ci_low: float
    ci_high: float
    detail: str

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def paired_test(baseline: list[float], candidate: list[float], *, higher_is_better: bool = True,
                margin: float = 0.0, confidence: float = 0.95) -> PairedTest:
    """Is `candidate` worse than `baseline` by more than `margin` (allowed drop, >= 0)?

    Pass/fail pairs with no margin use McNemar's exact test on the discordant pairs; anything
    else a paired bootstrap of the mean difference (fixed seed, so reruns agree).
    """
    n = len(baseline)
    sign = 1.0 if higher_is_better else -1.0
    deltas = [sign * (c - b) for b, c in zip(baseline, candidate)]  # > 0 = candidate better
    delta = sign * sum(deltas) / n if n else math.nan
    if n and margin == 0 and is_binary(baseline) and is_binary(candidate):
        worse = sum(1 for d in deltas if d < 0)
        better = sum(1 for d in deltas if d > 0)
        p = binomial_tail(worse, worse + better)
        low, high = bootstrap_ci([sign * d for d in deltas], confidence)
        return PairedTest("mcnemar_exact", n, delta, p, low, high,
                          f"{worse} row(s) got worse, {better} better")
    if not n:
        return PairedTest("paired_bootstrap", 0, math.nan, 1.0, math.nan, math.nan, "no pairs")
    means = bootstrap_means(deltas)
    # one-sided bootstrap p-value of H0: mean improvement >= -margin
    p = (sum(1 for m in means if m >= -margin) + 1) / (len(means) + 1)
    tail = (1 - confidence) / 2
    low, high = sorted((sign * _quantile(means, tail), sign * _quantile(means, 1 - tail)))
    return PairedTest("paired_bootstrap", n, delta, p, low, high,
                      f"mean change {delta:+.4f} over {n} paired row(s)")
