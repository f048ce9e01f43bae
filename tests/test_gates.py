"""Quality gates on synthetic summaries (the summary.json format)."""

import pytest

from genaiops.config.model import EvaluationSettings, Gate
from genaiops.evaluation.gates import FAIL, INSUFFICIENT, PASS, SKIPPED, check_gates, verdict
from genaiops.evaluation.summary import SUMMARY_SCHEMA, Summary

SETTINGS = EvaluationSettings(min_samples=30)


def summary(scores: list, variant="v1", dataset_hash="h1", dataset="tickets") -> Summary:
    rows = {str(i): s for i, s in enumerate(scores)}
    valid = [s for s in scores if isinstance(s, (int, float)) and s == s]
    value = sum(valid) / len(valid) if valid else None
    where = {"variant": variant, "dataset": dataset}
    return Summary.from_dict({
        "schema": SUMMARY_SCHEMA, "id": "e1", "use_case": "demo", "env": None, "experiment_id": "x1",
        "created_at": "2026-01-01T00:00:00Z", "flow": "flows/demo", "flow_kind": "dag",
        "llm": {"simulator": True, "label": "simulator"},
        "evaluation": {"primary_metric": "accuracy", "higher_is_better": True, "confidence": 0.95,
                       "alpha": 0.05, "min_samples": 30},
        "best": {"variant": variant, "variant_spec": {}, "flow": "flows/demo", "flow_kind": "dag",
                 "flow_hash": "sha256:0", "run_keys": [], "metric": "accuracy", "value": value or 0,
                 "ci_low": None, "ci_high": None},
        "datasets": {dataset: dataset_hash},
        "metrics": [
            {**where, "evaluator": "acc", "eval_dataset": "tickets_eval", "metric": "accuracy",
             "value": value, "row_score": "score", "n": len(scores), "n_valid": len(valid),
             "n_nan": len(scores) - len(valid), "n_error": 0, "ci_low": None, "ci_high": None,
             "method": "wilson", "source": "rows"},
            {**where, "evaluator": "builtin", "eval_dataset": None, "metric": "error_rate", "value": 0.0,
             "row_score": None, "n": len(scores), "n_valid": len(scores), "n_nan": 0, "n_error": 0,
             "ci_low": None, "ci_high": None, "method": "wilson", "source": "builtin"}],
        "scores": [{**where, "evaluator": "acc", "eval_dataset": "tickets_eval", "score": "score",
                    "rows": rows, "errors": {}}],
        "evaluations": [], "problems": [], "leaderboard": [], "gates": [], "verdict": None,
        "baseline": None,
    })


ACC = Gate(metric="accuracy", op=">=", threshold=0.8)
REG = Gate(metric="accuracy", op=">=", threshold=0, type="regression", alpha=0.05)


def test_absolute_gate_passes_and_fails_with_one_line_reason():
    good, bad = summary([1] * 9 + [0]), summary([1] * 6 + [0] * 4)
    [passed] = check_gates([ACC], good, None, SETTINGS)
    [failed] = check_gates([ACC], bad, None, SETTINGS)
    assert passed.status == PASS and failed.status == FAIL
    assert "accuracy=0.6" in failed.message and ">= 0.8" in failed.message and "\n" not in failed.message
    assert verdict([passed], []) == "pass" and verdict([passed, failed], []) == "fail"


def test_builtin_metric_gate():
    [result] = check_gates([Gate(metric="error_rate", op="==", threshold=0)], summary([1]), None, SETTINGS)
    assert result.status == PASS


def test_nan_metric_fails():
    [result] = check_gates([ACC], summary([float("nan"), None]), None, SETTINGS)
    assert result.status == FAIL and "NaN" in result.message


def test_unknown_metric_fails_naming_what_exists():
    [result] = check_gates([Gate(metric="f1", op=">=", threshold=0.5)], summary([1]), None, SETTINGS)
    assert result.status == FAIL and "available: accuracy, error_rate" in result.message


def test_min_samples_on_an_absolute_gate_says_not_enough_samples():
    gate = Gate(metric="accuracy", op=">=", threshold=0.8, min_samples=20)
    [result] = check_gates([gate], summary([1] * 10), None, SETTINGS)
    assert result.status == INSUFFICIENT and "not enough samples" in result.message
    assert verdict([result], []) == "pass"


def test_regression_flags_a_worse_candidate_not_an_equal_one():
    baseline = summary([1] * 40, variant="base")
    [worse] = check_gates([REG], summary([1] * 30 + [0] * 10), baseline, SETTINGS)
    [equal] = check_gates([REG], summary([1] * 40), baseline, SETTINGS)
    assert worse.status == FAIL and "regression" in worse.message and worse.test.method == "mcnemar_exact"
    assert equal.status == PASS and "no significant regression" in equal.message


def test_regression_below_min_samples_with_a_baseline_fails_the_verdict():
    """Issue 21.1: a PR set of 10 rows against a baseline must not pass as 'not judged'."""
    [result] = check_gates([REG], summary([1] * 10), summary([1] * 10), SETTINGS)
    assert result.status == FAIL
    assert "cannot judge the regression: not enough samples: 10 paired row(s) < min_samples 30" in result.message
    assert verdict([result], []) == "fail"


def test_regression_without_baseline_is_skipped_but_unpairable_rows_fail():
    [none] = check_gates([REG], summary([1] * 40), None, SETTINGS)
    [changed] = check_gates([REG], summary([1] * 40), summary([1] * 40, dataset_hash="h2"), SETTINGS)
    assert none.status == SKIPPED and verdict([none], []) == "pass"
    assert changed.status == FAIL and "changed" in changed.message and verdict([changed], []) == "fail"


def test_regression_on_a_dataset_the_baseline_lacks_fails_naming_its_datasets():
    [result] = check_gates([REG], summary([1] * 40), summary([1] * 40, dataset="tickets_full"), SETTINGS)
    assert result.status == FAIL and "the baseline has no accuracy on dataset" in result.message
    assert "its datasets: tickets_full" in result.message


def test_no_candidate_fails_every_gate():
    empty = summary([1])
    empty.best = None
    assert [r.status for r in check_gates([ACC, REG], empty, None, SETTINGS)] == [FAIL, FAIL]


@pytest.mark.parametrize("problems", [["evaluator accuracy failed: boom"]])
def test_evaluation_problems_fail_the_verdict(problems):
    assert verdict([], problems) == "fail"
