"""Report files: escaping, JUnit structure, redaction, baseline round trip, real browser render;
the typed summary's file format and digest; the console view."""

import ast
import csv
import hashlib
import json
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from genaiops.cli.render import table
from genaiops.config.model import EvaluationSettings, Gate
from genaiops.errors import UsageError
from genaiops.evaluation.baseline import read_summary
from genaiops.evaluation.gates import check_gates, verdict
from genaiops.evaluation.summary import SIMULATOR_LABEL, SUMMARY_SCHEMA, Summary, digest_of
from genaiops.reports import write_reports
from genaiops.reports.console import console_lines
from genaiops.secrets import REDACTOR

CANARY = "sk-canary-7f3e9a1b2c"
EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def summary_dict() -> dict:
    """A summary as plain JSON data (the summary.json format, plus the per-line rows)."""
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
        "gates": [], "verdict": None, "digest": "d" * 64, "duration_s": 1.0,
    }
    return summary


def make_summary() -> Summary:
    summary = Summary.from_dict(summary_dict())
    gates = [Gate(metric="accuracy", op=">=", threshold=0.8), Gate(metric="accuracy", op=">=", threshold=0.95),
             Gate(metric="accuracy", op=">=", threshold=0, type="regression")]
    results = check_gates(gates, summary, None, EvaluationSettings())
    summary.gates = results
    summary.verdict = verdict(results, [])
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
    assert baseline.rows == [] and baseline.scores[0].rows["3"] == 0
    gate = Gate(metric="accuracy", op=">=", threshold=0, type="regression", min_samples=2)
    [result] = check_gates([gate], make_summary(), baseline, EvaluationSettings())
    assert result.status == "pass" and result.test.n == 3  # line 2 is NaN on both sides


def test_summary_json_is_written_back_unchanged_with_a_recomputable_digest(reports):
    text = reports["summary.json"].read_text()
    summary = Summary.from_json(text)
    assert summary.to_json() == text
    data = json.loads(text)
    body = {k: v for k, v in data.items() if k not in ("digest", "report_dir", "duration_s", "rows")}
    by_hand = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    assert summary.digest() == digest_of(data) == by_hand
    summary.gates[0].message = "edited"
    assert summary.digest() != by_hand


def legacy_summary() -> dict:
    """summary.json as the code before the typed Summary wrote it: an int threshold, a gate
    without and one with a paired test, a reported value, a baseline, a report_dir."""
    data = summary_dict()
    del data["rows"]
    data["metrics"][0]["reported"] = 0.9
    data["evaluations"] = [{"key": "k1", "evaluator": "acc", "eval_dataset": "tickets_eval",
                            "variant": "careful", "dataset": "tickets", "kind": "flow", "mode": "run",
                            "pf_run": "r1", "status": "completed", "error": None, "duration_s": 1.5,
                            "reused": False}]
    data["baseline"] = {"id": "demo-eval-0", "experiment_id": "demo-exp-0", "variant": "careful",
                        "source": "main/summary.json", "digest": "b" * 64, "metrics": [data["metrics"][0]]}
    data["gates"] = [
        {"name": "accuracy >= 0.8", "metric": "accuracy", "type": "absolute", "op": ">=", "threshold": 0.8,
         "status": "pass", "message": "ok", "value": 0.9, "baseline": None, "test": {}, "variant": "careful"},
        {"name": "accuracy no regression vs baseline", "metric": "accuracy", "type": "regression",
         "op": ">=", "threshold": 0, "status": "pass", "message": "ok", "value": 0.9, "baseline": 0.9,
         "test": {"method": "mcnemar_exact", "n": 3, "delta": 0.0, "p_value": 1.0, "ci_low": 0.0,
                  "ci_high": 0.0, "detail": "0 row(s) got worse, 0 better"}, "variant": "careful"}]
    data["verdict"] = "pass"
    data["report_dir"] = "/tmp/reports/demo-eval-1"
    return data


# what the dict-based `phases.evaluate.digest` computed for legacy_summary()
LEGACY_DIGEST = "35cdf5c0dad53b48eb8fab82c60ee6b5f9741914bc37413896343861ae25f5ef"


def test_a_summary_written_before_the_typed_model_loads_unchanged_with_the_same_digest():
    legacy = legacy_summary()
    summary = Summary.from_dict(legacy)
    assert summary.to_dict() == legacy
    assert json.dumps(summary.to_dict(), sort_keys=True) == json.dumps(legacy, sort_keys=True)
    assert summary.digest() == LEGACY_DIGEST
    assert summary.gates[1].threshold == 0 and isinstance(summary.gates[1].threshold, int)


def test_a_summary_with_broken_content_is_a_usage_error_naming_file_and_field(tmp_path):
    data = legacy_summary()
    data["metrics"][1]["value"] = "high"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"summary.json is a genaiops evaluation summary with invalid "
                                         r"content: metrics\.1\.value"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(UsageError, match="summary.json is not readable JSON"):
        read_summary(tmp_path)


def test_console_view_sends_failures_to_stderr():
    summary = make_summary()
    summary.problems = ["evaluator acc on terse/tickets failed: boom"]
    summary.report_dir = "/tmp/r"
    lines = console_lines(summary, table)
    assert lines[0] == ("out", f"LLM: {SIMULATOR_LABEL}")
    assert lines[1].stream == "out" and lines[1].text.splitlines()[0].split() == [
        "#", "variant", "accuracy", "CI", "nan", "err", "failed", "lines", "tokens/line", "cost", "p95", "s"]
    assert "careful  0.9" in lines[1].text
    err = [line.text for line in lines if line.stream == "err"]
    assert err == ["problem: evaluator acc on terse/tickets failed: boom",
                   "gate FAIL         accuracy >= 0.95: " + summary.gates[1].message]
    assert [line.text for line in lines[-2:]] == ["reports: /tmp/r", "verdict: FAIL"]
    assert any(line.text.startswith("gate SKIPPED      accuracy no regression") for line in lines
               if line.stream == "out")


def test_a_file_that_is_not_a_summary_is_a_usage_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UsageError, match="not a genaiops evaluation summary"):
        read_summary(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        read_summary(tmp_path / "missing.json")


SRC = Path(__file__).resolve().parents[1] / "src" / "genaiops"


def genaiops_imports(package: str) -> dict[str, set[str]]:
    """{file: genaiops modules it imports, anywhere in the file except `if TYPE_CHECKING:`}."""
    found = {}
    for path in sorted((SRC / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        found[str(path.relative_to(SRC))] = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("genaiops") and id(node) not in skipped}
    return found


def test_reports_read_only_the_typed_results_and_evaluation_never_imports_its_callers():
    for path, modules in genaiops_imports("reports").items():
        evaluation = {m for m in modules if m.startswith("genaiops.evaluation")}
        assert evaluation <= {"genaiops.evaluation.summary", "genaiops.evaluation.comparison",
                              "genaiops.evaluation.safety"}, path  # safety: reads only a Summary
        assert not {m for m in modules if m.startswith(("genaiops.phases", "genaiops.cli"))}, path
    for path, modules in genaiops_imports("evaluation").items():
        assert not {m for m in modules if m.startswith(("genaiops.phases", "genaiops.reports",
                                                        "genaiops.cli"))}, path


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
