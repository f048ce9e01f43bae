"""`genaiops compare`: the non-inferiority statistics, and the parity gate end to end on the CLI:
the promptflow classification flow against its Agent Framework port (pass, with intervals), a
deliberately worse port whose prompt dropped a category (fails, though its own absolute gate
passes), and the ways a comparison refuses to pass without evidence."""

from __future__ import annotations

import csv
import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import PORT, copy_classification_and_port, edited
from scipy.optimize import minimize_scalar

from genaiops.cli import main
from genaiops.evaluation.stats import (
    _tango_restricted_p10,
    non_inferiority,
    tango_interval,
    tango_z,
)

BASE = "classification"
SHIPPING = '    "- shipping: delivery, tracking, damaged parcels, returns of physical goods\\n"\n'


# -- statistics -----------------------------------------------------------------------------

def test_tango_is_mcnemar_at_zero():
    for worse, better in ((3, 7), (0, 5), (9, 2)):
        assert tango_z(worse, better, 50, 0.0) == pytest.approx((better - worse) / math.sqrt(worse + better))


@pytest.mark.parametrize("worse, better, n, theta", [(9, 2, 46, -0.1), (0, 0, 46, -0.02),
                                                     (4, 6, 100, 0.05), (12, 1, 40, -0.2)])
def test_tangos_restricted_estimate_maximises_the_constrained_likelihood(worse, better, n, theta):
    """p10 = P(baseline right, candidate wrong) under H0: p01 - p10 = theta, found numerically."""
    rest = n - worse - better

    def negative_log_likelihood(p10):
        p01 = p10 + theta
        return -(worse * np.log(p10) + better * np.log(p01) + rest * np.log(1 - p10 - p01))

    low, high = max(1e-9, -theta + 1e-9), (1 - theta) / 2 - 1e-9
    numeric = minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded",
                              options={"xatol": 1e-12}).x
    assert _tango_restricted_p10(worse, better, n, theta) == pytest.approx(numeric, abs=1e-6)


def test_no_disagreement_on_46_rows_bounds_the_change_by_7_7_points():
    low, high = tango_interval(0, 0, 46, 0.95)
    z2 = 1.959963984540054 ** 2
    assert (low, high) == pytest.approx((-z2 / (46 + z2), z2 / (46 + z2)), abs=1e-6)


def test_identical_pass_fail_rows_are_non_inferior_only_for_a_margin_the_rows_can_show():
    same = [1] * 44 + [0] * 2
    assert non_inferiority(same, same, margin=0.1).non_inferior
    narrow = non_inferiority(same, same, margin=0.02)
    assert narrow.method == "tango_score" and not narrow.non_inferior
    assert non_inferiority(same * 5, same * 5, margin=0.02).non_inferior  # 230 rows


def test_margin_zero_is_mcnemars_exact_test():
    base = [1] * 30 + [0] * 20
    cand = [1] * 30 + [1] * 12 + [0] * 8
    test = non_inferiority(base, cand, margin=0)
    assert test.method == "mcnemar_exact" and (test.worse, test.better) == (0, 12)
    assert test.p_value == pytest.approx(0.5 ** 12) and test.non_inferior


def test_a_candidate_that_lost_a_category_is_not_non_inferior():
    base = [1] * 44 + [0] * 2
    cand = [1] * 35 + [0] * 9 + [1] * 2
    test = non_inferiority(base, cand, margin=0.1)
    assert (test.worse, test.better) == (9, 2) and not test.non_inferior
    assert test.ci_high < 0 < 0.1


def test_continuous_scores_use_the_paired_bootstrap_in_both_directions():
    rng = np.random.default_rng(7)
    base = rng.normal(4.0, 0.5, 60).tolist()
    better = [b + 0.05 for b in base]
    test = non_inferiority(base, better, margin=0.1)
    assert test.method == "paired_bootstrap" and test.non_inferior
    assert test.ci_low == pytest.approx(0.05) and test.delta == pytest.approx(0.05)
    worse = [b + 0.3 for b in base]  # lower is better (e.g. latency): +0.3 is worse
    lower = non_inferiority(base, worse, margin=0.1, higher_is_better=False)
    assert not lower.non_inferior and lower.delta == pytest.approx(0.3)


# -- the parity gate on the CLI --------------------------------------------------------------

@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_classification_and_port(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def worse_repo(tmp_path_factory) -> Path:
    """The port with a prompt that dropped the shipping category."""
    root = copy_classification_and_port(tmp_path_factory.mktemp("worse"))
    app = root / "flows/classification/maf/app.py"
    text = app.read_text()
    assert SHIPPING in text
    app.write_text(text.replace(SHIPPING, ""))
    return root


def compare(repo: Path, *extra: str) -> tuple[int, dict, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--repo", str(repo), "compare", "--baseline", BASE, "--candidate", PORT,
                     "--json", *extra])
    return code, json.loads(out.getvalue()), err.getvalue()


@pytest.fixture(scope="module")
def parity(repo, state):
    return compare(repo)


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_the_port_is_non_inferior_with_intervals(parity):
    code, result, err = parity
    assert code == 0, err
    assert result["ok"] is True and result["verdict"] == "pass"
    [metric] = result["metrics"]
    assert metric["metric"] == "accuracy" and metric["status"] == "pass"
    assert metric["method"] == "tango_score" and metric["margin"] == 0.1  # parity_margin of the port
    assert metric["n"] == 46 and metric["worse"] == metric["better"] == 0
    assert metric["baseline"]["value"] == metric["candidate"]["value"] == pytest.approx(0.9565, abs=1e-4)
    assert metric["baseline"]["ci_low"] < metric["baseline"]["value"] < metric["baseline"]["ci_high"]
    assert metric["ci_low"] == pytest.approx(-0.0771, abs=1e-4) and metric["p_value"] < 0.025
    sides = (result["baseline"], result["candidate"])
    assert [s["engine"] for s in sides] == ["promptflow", "agent_framework"]
    assert [s["variant"] for s in sides] == ["summarize.full+classify.careful"] * 2
    assert result["rows_total"] == 46 and result["rows_changed"] == []  # same prompts, same answers


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_the_comparison_writes_the_report_forms(parity):
    _code, result, _err = parity
    folder = Path(result["report_dir"])
    for name in ("comparison.json", "changed_rows.csv", "comparison.md", "junit.xml", "report.html",
                 "baseline/summary.json", "baseline/report.html", "candidate/summary.json",
                 "candidate/junit.xml"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "comparison.json").read_text())["verdict"] == "pass"
    suite = ET.parse(folder / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    markdown = (folder / "comparison.md").read_text()
    assert "PASS" in markdown and "-0.07707..+0.07707" in markdown and "SIMULATOR" in markdown
    html = (folder / "report.html").read_text()
    assert "Non-inferiority" in html and "agent_framework" in html


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_a_margin_46_rows_cannot_show_fails_closed(repo, state):
    code, result, _err = compare(repo, "--margin", "0.02")
    [metric] = result["metrics"]
    assert code == 1 and result["verdict"] == "fail"
    assert metric["status"] == "fail" and metric["message"].startswith("inconclusive")


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_a_port_that_dropped_a_category_fails_the_gate(worse_repo, state):
    code, result, err = compare(worse_repo)
    [metric] = result["metrics"]
    assert code == 1 and result["verdict"] == "fail" and metric["status"] == "fail"
    assert metric["candidate"]["value"] < metric["baseline"]["value"]
    assert metric["worse"] > metric["better"] and metric["ci_high"] < 0
    assert "parity FAIL" not in err  # --json: the verdict is in the JSON
    # a mean threshold alone would let it through: its own `accuracy >= 0.8` gate passes
    assert result["candidate"]["verdict"] == "pass"
    changed = result["rows_changed"]
    shipping = [r for r in changed if r["inputs"].get("label") == "shipping"]
    assert shipping and all(r["change"] == "worse" for r in shipping)
    assert {r["candidate"]["outputs"]["category"] for r in shipping} <= {"other", "billing",
                                                                          "technical", "account"}
    folder = Path(result["report_dir"])
    suite = ET.parse(folder / "junit.xml").getroot()
    assert suite.get("failures") == "1"
    with (folder / "changed_rows.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:6] == ["dataset", "line", "change", "inputs", "baseline_outputs",
                           "candidate_outputs"]
    assert len(rows) == len(changed) + 1 and {r[2] for r in rows[1:]} <= {"worse", "better"}


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_the_human_view_shows_the_verdict_and_the_interval(worse_repo, state, capsys):
    code = main(["--repo", str(worse_repo), "compare", "--baseline", BASE, "--candidate", PORT])
    captured = capsys.readouterr()
    assert code == 1
    assert "verdict: FAIL" in captured.out and "95% CI" in captured.out
    assert "parity FAIL  accuracy: worse" in captured.err


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_no_margin_is_a_usage_error(repo, state, capsys):
    with edited(repo / f"configs/{PORT}/experiment.yaml", "  parity_margin: 0.1\n", ""):
        code, result, _ = compare(repo)
    assert code == 2 and "no non-inferiority margin" in result["error"]
    assert "--margin" in result["hint"]


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_a_selector_naming_several_variants_is_a_usage_error(repo, state):
    code, result, _ = compare(repo, "--candidate-variant", "all")
    assert code == 2 and "selects 3 variants" in result["error"]


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_different_evaluators_are_not_compared(repo, state):
    grade = repo / "flows/classification/evaluation/grade.py"
    shadow = repo / "flows/classification/evaluation_port"
    shutil.copytree(grade.parent, shadow)
    (shadow / "grade.py").write_text(grade.read_text().replace(".lower()", ".casefold()"))
    try:
        with edited(repo / f"configs/{PORT}/experiment.yaml", "flow: flows/classification/evaluation",
                    "flow: flows/classification/evaluation_port"):
            code, result, _ = compare(repo)
    finally:
        shutil.rmtree(shadow)
    assert code == 1 and result["verdict"] == "fail"
    assert any("evaluator 'accuracy' differs" in p for p in result["problems"])


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_different_datasets_cannot_be_paired(repo, state):
    with edited(repo / f"configs/{PORT}/experiment.yaml", "datasets/classification/tickets.jsonl",
                "datasets/classification/tickets_pr.jsonl"):
        code, result, _ = compare(repo)
    assert code == 2 and "nothing to pair" in result["error"]


@pytest.mark.promptflow  # real engine processes (both engines): the slow tier
@pytest.mark.agent_framework
def test_a_side_that_fails_to_run_is_named(repo, state):
    with edited(repo / "flows/classification/maf/app.py", "    words = re.findall",
                "    raise RuntimeError('the port is broken')\n    words = re.findall"):
        code, result, _ = compare(repo)
    assert code == 1 and result["ok"] is False
    assert result["error"].startswith("the candidate classification_maf: experiment failed")
    assert "the port is broken" in result["error"]
