"""Report files: escaping, JUnit structure, redaction, baseline round trip, real browser render."""

import csv
import json
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest

from genaiops.config.model import EvaluationSettings, Gate
from genaiops.errors import UsageError
from genaiops.evaluation.baseline import read_summary
from genaiops.evaluation.gates import check_gates, verdict
from genaiops.phases.evaluate import SIMULATOR_LABEL, SUMMARY_SCHEMA
from genaiops.reports import write_reports
from genaiops.secrets import REDACTOR

CANARY = "sk-canary-7f3e9a1b2c"
EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def make_summary() -> dict:
    variants = ["careful", "terse"]
    metrics, scores, rows = [], [], []
    for v, value in zip(variants, (0.9, 0.5)):
        metrics.append({"variant": v, "dataset": "tickets", "evaluator": "acc", "eval_dataset": "tickets_eval",
                        "metric": "accuracy", "value": value, "ci_low": value - 0.1, "ci_high": value + 0.05,
                        "method": "wilson", "n": 4, "n_valid": 3, "n_nan": 1, "n_error": 0,
                        "source": "reported", "row_score": "score"})
        metrics.append({"variant": v, "dataset": "tickets", "evaluator": "builtin", "eval_dataset": None,
                        "metric": "error_rate", "value": 0.0, "ci_low": 0.0, "ci_high": 0.49, "method": "wilson",
                        "n": 4, "n_valid": 4, "n_nan": 0, "n_error": 0, "source": "builtin", "row_score": None})
        scores.append({"variant": v, "dataset": "tickets", "evaluator": "acc", "eval_dataset": "tickets_eval",
                       "score": "score", "rows": {"0": 1, "1": 1, "2": None, "3": 0}, "errors": {}})
    for line in range(4):
        rows.append({"dataset": "tickets", "line": line, "inputs": {"text": f"ticket {line} {CANARY}"},
                     "variants": {v: {"outputs": {"category": EVIL if line == 0 else "billing"},
                                      "error": None, "latency_s": 0.1, "scores": {"acc.score": 1}}
                                  for v in variants}})
    board = [{"rank": i + 1, "variant": v, "primary_metric": "accuracy", "value": val, "ci_low": val - 0.1,
              "ci_high": val + 0.05, "n_valid": 3, "n_nan": 1, "n_error": 0, "dataset": "tickets", "lines": 4,
              "lines_failed": 0, "error_rate": 0.0, "total_tokens": 1200, "tokens_per_line": 300.0,
              "cost": 0.001, "latency_p50_s": 0.1, "latency_p95_s": 0.2}
             for i, (v, val) in enumerate(zip(variants, (0.9, 0.5)))]
    summary = {
        "schema": SUMMARY_SCHEMA, "id": "demo-eval-1", "use_case": "demo", "env": None,
        "experiment_id": "demo-exp-1", "created_at": "2026-01-01T00:00:00Z", "flow": "flows/demo/standard",
        "flow_kind": "dag", "llm": {"simulator": True, "label": SIMULATOR_LABEL},
        "evaluation": {"primary_metric": "accuracy", "higher_is_better": True, "confidence": 0.95,
                       "alpha": 0.05, "min_samples": 30},
        "datasets": {"tickets": "sha256:abc"}, "metrics": metrics, "scores": scores, "evaluations": [],
        "problems": [], "baseline": None, "leaderboard": board, "rows": rows,
        "best": {"variant": "careful", "variant_spec": {"nodes": {}}, "flow": "flows/demo/standard",
                 "flow_kind": "dag", "flow_hash": "sha256:0123456789abcdef", "run_keys": ["k"],
                 "metric": "accuracy", "value": 0.9, "ci_low": 0.8, "ci_high": 0.95},
        "digest": "d" * 64, "duration_s": 1.0,
    }
    gates = [Gate(metric="accuracy", op=">=", threshold=0.8), Gate(metric="accuracy", op=">=", threshold=0.95),
             Gate(metric="accuracy", op=">=", threshold=0, type="regression")]
    results = check_gates(gates, summary, None, EvaluationSettings())
    summary["gates"] = [r.as_dict() for r in results]
    summary["verdict"] = verdict(results, [])
    return summary


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    REDACTOR.add(CANARY)
    folder = tmp_path_factory.mktemp("report")
    return write_reports(make_summary(), folder)


def test_all_report_files_are_written(reports):
    assert sorted(reports) == ["junit.xml", "metrics.csv", "report.html", "results.csv", "summary.json", "summary.md"]


def test_html_escapes_llm_output_and_is_self_contained(reports):
    html = reports["report.html"].read_text()
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html  # no external assets
    assert SIMULATOR_LABEL in html and 'id="leaderboard"' in html


def test_secrets_never_reach_any_report(reports):
    for path in reports.values():
        assert CANARY not in path.read_text(), path.name


def test_junit_xml_has_one_testcase_per_gate(reports):
    root = ET.parse(reports["junit.xml"]).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("tests") == "4"  # evaluation runs + 3 gates
    failed = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("name") for c in failed] == ["accuracy >= 0.95"]
    assert "accuracy=0.9" in failed[0].find("failure").get("message")
    assert len(skipped) == 1 and suite.get("failures") == "1" and suite.get("skipped") == "1"


def test_csv_files_parse(reports):
    results = list(csv.DictReader(reports["results.csv"].open()))
    assert len(results) == 8 and results[0]["acc.score"] == "1"
    assert EVIL in results[0]["outputs"]  # CSV keeps the raw text; only HTML needs escaping
    metrics = list(csv.DictReader(reports["metrics.csv"].open()))
    assert {m["metric"] for m in metrics} == {"accuracy", "error_rate"} and metrics[0]["n_nan"] == "1"


def test_markdown_is_short_and_names_the_verdict(reports):
    text = reports["summary.md"].read_text()
    assert text.startswith("## genaiops evaluate: demo - FAIL")
    assert "SIMULATOR" in text and "| 1 | careful | 0.9 |" in text and len(text.splitlines()) < 40


def test_summary_json_round_trips_as_a_baseline(reports):
    baseline = read_summary(reports["summary.json"].parent)
    assert "rows" not in baseline and baseline["scores"][0]["rows"]["3"] == 0
    gate = Gate(metric="accuracy", op=">=", threshold=0, type="regression", min_samples=2)
    [result] = check_gates([gate], make_summary(), baseline, EvaluationSettings())
    assert result.status == "pass" and result.test["n"] == 3  # line 2 is NaN on both sides


def test_a_file_that_is_not_a_summary_is_a_usage_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UsageError, match="not a genaiops evaluation summary"):
        read_summary(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        read_summary(tmp_path / "missing.json")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) to render report.html")
def test_report_renders_in_a_real_browser(reports):
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", reports["report.html"].resolve().as_uri()],
            capture_output=True, text=True, timeout=90)
    dom = proc.stdout
    assert 'id="leaderboard"' in dom and "careful" in dom and "★ best" in dom
    assert "&lt;script&gt;alert(" in dom  # still text after parsing: nothing executed or injected
    assert "<script>alert" not in dom
