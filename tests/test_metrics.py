"""Statistics behind evaluation metrics: intervals, NaN/error counting, paired tests; the
numpy implementation cross-checked against closed-form references on grids of inputs."""

import math
import statistics

import pytest

from genaiops.evaluation import stats
from genaiops.evaluation.stats import (
    ERROR,
    aggregate,
    binomial_tail,
    bootstrap_ci,
    bootstrap_means,
    paired_test,
    wilson,
)


def textbook_wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval written out (no continuity correction)."""
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def exact_tail(k: int, n: int) -> float:
    """P(X >= k), X ~ Binomial(n, 1/2), summed exactly."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_the_closed_form_on_a_grid(confidence):
    for n in range(1, 41):
        for k in range(n + 1):
            low, high = wilson(k, n, confidence)
            ref_low, ref_high = textbook_wilson(k, n, confidence)
            assert low == pytest.approx(ref_low, abs=1e-12) and high == pytest.approx(ref_high, abs=1e-12)
            assert 0.0 <= low <= k / n <= high <= 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_mcnemar_tail_matches_the_exact_binomial_sum_on_a_grid():
    for n in range(0, 61):
        for k in range(n + 1):
            assert binomial_tail(k, n) == pytest.approx(exact_tail(k, n) if n else 1.0, rel=1e-9, abs=1e-15)


def test_mcnemar_p_value_counts_only_the_discordant_pairs():
    # 7 worse, 2 better, 31 unchanged: the unchanged pairs carry no evidence either way
    baseline = [1] * 7 + [0] * 2 + [1] * 20 + [0] * 11
    candidate = [0] * 7 + [1] * 2 + [1] * 20 + [0] * 11
    test = paired_test(baseline, candidate)
    assert test.method == "mcnemar_exact" and test.n == 40
    assert test.p_value == pytest.approx(exact_tail(7, 9))
    assert test.detail == "7 row(s) got worse, 2 better"


def test_wilson_matches_the_textbook_interval():
    low, high = wilson(44, 46)  # 0.9565 accuracy on 46 rows
    assert low == pytest.approx(0.8547, abs=1e-3) and high == pytest.approx(0.9880, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.9, 0.55, 0.6, 0.2]
    first, second = bootstrap_ci(values), bootstrap_ci(values)
    assert first == second
    assert first[0] < sum(values) / len(values) < first[1]


def test_bootstrap_interval_agrees_with_the_normal_approximation():
    values = [((i * 37) % 101) / 100 for i in range(400)]  # spread-out continuous scores
    mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    low, high = bootstrap_ci(values)
    assert low == pytest.approx(mean - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(mean + 1.96 * se, abs=0.25 * se)


def test_bootstrap_in_small_blocks_keeps_every_resample(monkeypatch):
    monkeypatch.setattr(stats, "RESAMPLE_BLOCK_VALUES", 7)  # 1 resample of 5 values per block
    means = bootstrap_means([0.1, 0.2, 0.3, 0.4, 0.5], samples=11)
    assert means.shape == (11,) and ((0.1 <= means) & (means <= 0.5)).all()
    assert (means == bootstrap_means([0.1, 0.2, 0.3, 0.4, 0.5], samples=11)).all()


def test_aggregate_counts_nan_and_errored_rows_separately():
    agg = aggregate([1, 0, 1, float("nan"), None, "n/a", ERROR, ERROR, 1])
    assert (agg.n, agg.n_valid, agg.n_nan, agg.n_error) == (9, 4, 3, 2)
    assert agg.mean == pytest.approx(0.75)
    assert agg.method == "wilson"


def test_aggregate_with_no_usable_row_is_nan_not_zero():
    agg = aggregate([ERROR, float("nan")])
    assert math.isnan(agg.mean) and agg.as_dict()["mean"] is None
    assert (agg.n_nan, agg.n_error) == (1, 1)


def test_continuous_scores_use_bootstrap():
    assert aggregate([0.2, 0.5, 0.7]).method == "bootstrap"


def test_mcnemar_flags_a_clearly_worse_candidate_and_not_an_equal_one():
    baseline = [1] * 40
    worse = [1] * 30 + [0] * 10
    test = paired_test(baseline, worse)
    assert test.method == "mcnemar_exact"
    assert test.p_value == pytest.approx(binomial_tail(10, 10)) and test.p_value < 0.01
    assert test.delta == pytest.approx(-0.25)
    same = paired_test(baseline, list(baseline))
    assert same.p_value == 1.0 and same.delta == 0


def test_mcnemar_balanced_changes_are_not_significant():
    baseline = [1, 0] * 20
    candidate = [0, 1] * 20  # 20 worse, 20 better
    assert paired_test(baseline, candidate).p_value > 0.5


def test_paired_bootstrap_for_continuous_scores_and_lower_is_better():
    baseline = [0.8, 0.7, 0.9, 0.85, 0.75] * 8
    worse = [v - 0.2 for v in baseline]
    assert paired_test(baseline, worse).p_value < 0.01
    assert paired_test(baseline, baseline).p_value > 0.5
    # latency-like: lower is better, the candidate is slower
    assert paired_test([1.0] * 40, [1.5] * 40, higher_is_better=False).p_value < 0.01
    # a margin tolerates a small drop
    assert paired_test(baseline, [v - 0.01 for v in baseline], margin=0.05).p_value > 0.5


@pytest.mark.parametrize("n", [2001, 3000])
def test_mcnemar_tail_in_log_space_matches_the_exact_sum_for_many_pairs(n):
    for k in (0, n // 3, n // 2 - 10, n // 2, n // 2 + 40, n - 1, n):
        assert binomial_tail(k, n) == pytest.approx(exact_tail(k, n), rel=1e-9, abs=1e-300)


def test_a_command_does_not_import_scipy():
    """scipy.stats cost each command about 1.5 s of start-up; the statistics are closed forms."""
    import subprocess
    import sys
    code = ("import sys, genaiops.cli, genaiops.phases.verdict, genaiops.evaluation.scoring, "
            "genaiops.evaluation.parity, genaiops.evaluation.repeats; print(sorted(m for m in sys.modules if m.startswith('scipy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
