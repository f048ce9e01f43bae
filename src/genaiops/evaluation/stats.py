"""Statistics for evaluation scores, on numpy and deterministic (fixed bootstrap seed).

- `aggregate(values)` turns per-row scores into a mean with a confidence interval, counting
  NaN / non-numeric rows and errored rows separately (never silently dropped);
- Wilson intervals for pass/fail (0/1) scores, percentile bootstrap for continuous ones;
- paired tests for regression gates: McNemar exact (one-sided binomial test on the discordant
  pairs) for pass/fail pairs, paired bootstrap of the mean difference for continuous pairs;
- non-inferiority with a margin for `genaiops compare` (`non_inferiority`): for pass/fail pairs
  McNemar's exact test (margin 0) or its generalisation to a margin, Tango's score test, with
  Tango's score interval for the difference; for continuous pairs the paired bootstrap.

The closed forms here (Wilson, the binomial tail, the normal quantile, a bisection) replace
scipy.stats, whose import alone cost every command about 1.5 s; tests/test_stats.py holds them
to scipy's figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

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


def normal_quantile(p: float) -> float:
    return NormalDist().inv_cdf(p)


def normal_sf(z: float) -> float:
    """P(Z > z), exact in the far tail too (erfc, not 1 - cdf)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval, without continuity correction."""
    if n == 0:
        return (math.nan, math.nan)
    z = normal_quantile(1 - (1 - confidence) / 2)
    p, z2 = successes / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact at the edges, not 1e-17
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): McNemar's exact one-sided p-value for k of n
    discordant pairs going the bad way. Exact integers up to a few thousand pairs, log-space above."""
    if n == 0 or k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= 2000:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def bisect_root(f, low: float, high: float, xtol: float = 1e-10) -> float:
    """A root of f in [low, high], where f(low) and f(high) differ in sign."""
    f_low = f(low)
    while high - low > xtol:
        middle = (low + high) / 2
        f_middle = f(middle)
        if f_middle == 0:
            return middle
        if (f_middle < 0) == (f_low < 0):
            low, f_low = middle, f_middle
        else:
            high = middle
    return (low + high) / 2


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


@dataclass
class NonInferiorityTest:
    """Is the candidate not worse than the baseline by more than `margin`?

    `delta` and the interval are candidate minus baseline in the metric's units; `p_value` is
    one-sided, for "worse by `margin` or more". Non-inferior when p < (1 - confidence) / 2,
    which is when the two-sided `confidence` interval stays above -margin (higher-is-better;
    mirrored otherwise)."""

    method: str  # mcnemar_exact | tango_score | paired_bootstrap
    n: int
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    margin: float
    confidence: float
    worse: int  # rows where the candidate scored worse
    better: int

    @property
    def non_inferior(self) -> bool:
        return self.n > 0 and self.p_value < (1 - self.confidence) / 2


def _tango_restricted_p10(worse: int, better: int, n: int, theta: float) -> float:
    """MLE of P(baseline passes, candidate fails) under H0: improvement = theta (Tango 1998):
    the positive root of 2n p^2 - B p - worse*theta*(1 - theta) = 0."""
    b = worse * (1 - theta) + better * (1 + theta) - 2 * n * theta
    return (b + math.sqrt(b * b + 8 * n * worse * theta * (1 - theta))) / (4 * n)


def tango_z(worse: int, better: int, n: int, theta: float) -> float:
    """Tango's score statistic for H0: improvement (candidate - baseline pass rate) = theta.
    At theta = 0 it is McNemar's statistic (better - worse) / sqrt(better + worse)."""
    p10 = _tango_restricted_p10(worse, better, n, theta)
    variance = n * (2 * p10 + theta * (1 - theta))
    numerator = better - worse - n * theta
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_interval(worse: int, better: int, n: int, confidence: float) -> tuple[float, float]:
    """The score interval for the improvement: every theta the two-sided test does not reject."""
    z = normal_quantile(1 - (1 - confidence) / 2)
    estimate = (better - worse) / n
    edge = 1 - 1e-12

    def bound(target: float, low: float, high: float) -> float:
        f = lambda theta: tango_z(worse, better, n, theta) - target  # noqa: E731
        if f(low) * f(high) > 0:  # the test does not reject anywhere on this side
            return low if target > 0 else high
        return bisect_root(f, low, high)

    return (bound(z, -edge, estimate), bound(-z, estimate, edge))


def non_inferiority(baseline: list[float], candidate: list[float], *, margin: float,
                    confidence: float = 0.95, higher_is_better: bool = True) -> NonInferiorityTest:
    """Paired non-inferiority of `candidate` against `baseline` (row i with row i)."""
    n = len(baseline)
    sign = 1.0 if higher_is_better else -1.0
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    improvements = sign * (cand - base)
    worse = int(np.count_nonzero(improvements < 0))
    better = int(np.count_nonzero(improvements > 0))
    if not n:
        return NonInferiorityTest("none", 0, math.nan, math.nan, math.nan, 1.0, margin, confidence,
                                  0, 0)
    delta = float((cand - base).mean())

    def natural(low: float, high: float) -> tuple[float, float]:
        return tuple(sorted((sign * low, sign * high)))

    if is_binary(baseline) and is_binary(candidate):
        low, high = natural(*tango_interval(worse, better, n, confidence))
        if margin == 0:
            # H0: improvement <= 0; exact: of the discordant pairs, are there enough "better"?
            p_value = binomial_tail(better, worse + better) if worse + better else 1.0
            method = "mcnemar_exact"
        else:
            p_value = normal_sf(tango_z(worse, better, n, -margin))
            method = "tango_score"
        return NonInferiorityTest(method, n, delta, low, high, p_value, margin, confidence, worse,
                                  better)
    means = bootstrap_means(improvements.tolist())
    p_value = (int(np.count_nonzero(means <= -margin)) + 1) / (means.size + 1)
    low, high = natural(*_percentile_interval(means, confidence))
    return NonInferiorityTest("paired_bootstrap", n, delta, low, high, p_value, margin, confidence,
                              worse, better)
