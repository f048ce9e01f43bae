"""Statistics behind evaluation metrics: intervals, NaN/error counting, paired tests."""

import math

import pytest

from genaiops.evaluation.stats import (
    ERROR,
    aggregate,
    binomial_tail,
    bootstrap_ci,
    paired_test,
    wilson,
)


def test_wilson_matches_the_textbook_interval():
    low, high = wilson(44, 46)  # 0.9565 accuracy on 46 rows
    assert low == pytest.approx(0.8547, abs=1e-3) and high == pytest.approx(0.9880, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.9, 0.55, 0.6, 0.2]
    first, second = bootstrap_ci(values), bootstrap_ci(values)
    assert first == second
    assert first[0] < sum(values) / len(values) < first[1]


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
