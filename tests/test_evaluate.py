"""End to end: real promptflow evaluation runs (DAG eval flow, flex evaluator, code evaluator)
against real experiment runs on the LLM simulator, through the `run evaluate` CLI function. The
code evaluator's row accounting runs on the python engine's demo (scoring, not the engine, under test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_factory import make_repo, use_code_evaluator, write, write_normalize

from genaiops.cli import main
from genaiops.config import load_experiment
from genaiops.engines.promptflow.env import promptflow_home
from genaiops.evaluation.summary import Summary, digest_of
from genaiops.phases.context import PhaseContext
from genaiops.phases.evaluate import EvaluateOptions, run_evaluate
from genaiops.phases.experiment import ExperimentOptions, run_experiment
from genaiops.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def cli(repo: Path, *argv: str) -> int:
    """`genaiops --repo REPO run evaluate --no-progress ARGV...`, in process."""
    return main(["--repo", str(repo), "run", "evaluate", "--no-progress", *argv])


def experiment(config, **options) -> str:
    """Run an experiment as `genaiops run experiment` does; its id."""
    with PhaseContext.for_config(config, show_progress=False) as ctx:
        return run_experiment(ctx, ExperimentOptions(**options)).experiment_id


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def classification(state, tmp_path_factory):
    """One experiment with every variant; an 'experiment' of the worst variant alone reuses its run.
    The first evaluation (no baseline) then serves as the baseline of the others."""
    config = load_experiment(REPO, "classification")
    all_runs = experiment(config, variants="all")
    terse = experiment(config, variants="classify.terse")
    reports = tmp_path_factory.mktemp("reports")
    first = cli(REPO, "-u", "classification", "--experiment", all_runs,
                "--report-dir", str(reports / "first"))
    second = cli(REPO, "-u", "classification", "--experiment", all_runs,
                 "--report-dir", str(reports / "second"))
    return {"config": config, "all": all_runs, "terse": terse,
            "reports": reports, "exit": (first, second), "state": state}


@pytest.mark.promptflow
def test_dag_evaluation_ranks_variants_and_passes_gates(classification):
    assert classification["exit"][0] == 0
    summary = _summary(classification["reports"] / "first")
    board = summary["leaderboard"]
    assert [r["variant"] for r in board] == ["summarize.full+classify.careful", "summarize.brief+classify.careful",
                                             "summarize.full+classify.terse"]
    assert board[0]["value"] == pytest.approx(0.9565, abs=1e-3)
    assert board[0]["ci_low"] < board[0]["value"] < board[0]["ci_high"]
    assert board[0]["total_tokens"] > 0 and board[0]["cost"] > 0 and board[0]["latency_p95_s"] > 0
    assert {e["mode"] for e in summary["evaluations"]} == {"run"}  # promptflow `run=` evaluation
    assert summary["llm"]["simulator"] is True
    assert [g["status"] for g in summary["gates"]] == ["pass", "pass", "pass", "skipped"]
    best = json.loads(Workspace.for_repo(REPO).best_pointer("classification").read_text())
    assert best["variant"] == "summarize.full+classify.careful" and best["flow_hash"].startswith("sha256:")
    assert best["variant_spec"]["nodes"] == {"summarize": "full", "classify": "careful"}
    second = _summary(classification["reports"] / "second")  # the pointer follows the latest evaluation
    assert best["summary_digest"] == second["digest"] == digest_of(second)
    assert Summary.from_dict(second).digest() == second["digest"]
    assert best["evaluation_id"] == second["id"] and best["verdict"] == "pass"


@pytest.mark.promptflow
def test_second_identical_evaluate_reuses_every_evaluation(classification):
    assert classification["exit"][1] == 0
    first = _summary(classification["reports"] / "first")
    second = _summary(classification["reports"] / "second")
    assert [e["reused"] for e in first["evaluations"]] == [False] * 3
    assert [e["reused"] for e in second["evaluations"]] == [True] * 3
    assert second["metrics"] == first["metrics"]


@pytest.mark.promptflow
def test_worse_variant_fails_absolute_and_regression_gates_with_exit_1(classification, capsys):
    baseline = classification["reports"] / "first" / "summary.json"
    code = cli(REPO, "-u", "classification", "--experiment", classification["terse"], "--baseline",
               str(baseline), "--report-dir", str(classification["reports"] / "worse"))
    captured = capsys.readouterr()
    assert code == 1
    gates = {g["name"]: g for g in _summary(classification["reports"] / "worse")["gates"]}
    assert gates["accuracy >= 0.8"]["status"] == "fail"
    regression = gates["accuracy no regression vs baseline"]
    assert regression["status"] == "fail" and regression["test"]["method"] == "mcnemar_exact"
    assert regression["test"]["p_value"] < 0.05 and regression["test"]["delta"] < -0.2
    assert "gate FAIL         accuracy >= 0.8: accuracy=0.7174" in captured.err
    assert "verdict: FAIL" in captured.out


@pytest.mark.promptflow
def test_equal_candidate_is_not_flagged_as_regression(classification):
    baseline = classification["reports"] / "first"
    code = cli(REPO, "-u", "classification", "--experiment", classification["all"], "--baseline",
               str(baseline), "--report-dir", str(classification["reports"] / "equal"))
    assert code == 0
    gate = _summary(classification["reports"] / "equal")["gates"][-1]
    assert gate["status"] == "pass" and gate["test"]["delta"] == 0 and gate["test"]["n"] == 46


@pytest.mark.promptflow
def test_evaluation_falls_back_to_ledger_outputs_when_the_promptflow_run_is_gone(classification):
    config = classification["config"]
    worse = _summary(classification["reports"] / "worse")
    [run_scores] = [s for s in worse["scores"] if s["score"] == "score"]

    terse = Workspace.for_repo(REPO).ledger().load_experiment("classification", classification["terse"])
    record = Workspace.for_repo(REPO).ledger().find(terse.runs[0].key)
    run_dir = promptflow_home() / ".runs" / record.engine_run
    hidden = run_dir.with_name(run_dir.name + ".hidden")
    run_dir.rename(hidden)
    try:
        with PhaseContext.for_config(config, show_progress=False) as ctx:
            summary = run_evaluate(ctx, EvaluateOptions(experiment=classification["terse"], force=True,
                                                        write_reports=False))
    finally:
        hidden.rename(run_dir)
    assert [e.mode for e in summary.evaluations] == ["data"]
    [data_scores] = [s for s in summary.scores if s.score == "score"]
    assert data_scores.rows == run_scores["rows"]


@pytest.mark.promptflow
def test_pr_overlay_is_judged_against_the_deployed_evaluation(classification, tmp_path):
    """Issue 21.1: the PR overlay evaluates the rows the dev evaluation holds, so the regression gate
    is judged (it used to pair 10 PR rows with nothing and say 'skipped', verdict pass)."""
    config = load_experiment(REPO, "classification", "pr")
    code = cli(REPO, "-u", "classification", "-e", "pr", "--experiment", experiment(config),
               "--baseline", str(classification["reports"] / "first" / "summary.json"),
               "--report-dir", str(tmp_path / "pr"))
    [gate] = [g for g in _summary(tmp_path / "pr")["gates"] if g["type"] == "regression"]
    assert code == 0 and gate["status"] == "pass", gate
    assert "no significant regression" in gate["message"] and "over 46 pairs" in gate["message"]


@pytest.mark.promptflow
def test_qa_flex_evaluator(state, tmp_path):
    config = load_experiment(REPO, "qa")
    code = cli(REPO, "-u", "qa", "--experiment", experiment(config), "--report-dir", str(tmp_path))
    summary = _summary(tmp_path)
    assert code == 0, summary["gates"]
    f1 = next(m for m in summary["metrics"] if m["metric"] == "f1")
    assert f1["row_score"] == "f1" and f1["value"] > 0.9 and f1["ci_low"] < f1["value"]
    assert f1["reported"] == pytest.approx(f1["value"], abs=1e-4)  # the flex evaluator's __aggregate__
    assert {m["metric"] for m in summary["metrics"]} >= {"exact_match", "contains", "error_rate", "cost"}
    assert summary["evaluations"][0]["kind"] == "flow" and summary["evaluations"][0]["mode"] == "run"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "junit.xml").is_file()


CODE_EVALUATOR = """\
import math


def score(groundtruth, prediction):
    if prediction == "raise":
        raise RuntimeError("evaluator broke on this row")
    if prediction == "nan":
        return {"match": math.nan, "length": len(prediction)}
    return {"match": float(groundtruth == prediction), "length": len(prediction)}


def summarize(rows):
    return {"match_rate": sum(r["match"] for r in rows if r["match"] == r["match"]) / len(rows)}
"""


def test_code_evaluator_counts_nan_and_errored_rows(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", engine="python")
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "state"))
    use_code_evaluator(repo, "evaluators/exact.py", CODE_EVALUATOR, "{primary_metric: match}",
                       '\n  - {metric: match, op: ">=", threshold: 0.9}')
    write_normalize(repo, """\
        if text == "boom":
            raise ValueError("the flow failed on this line")
        return text.strip().lower()
        """)
    rows = [("Refund please", "refund please"), ("Hi", "hi"), ("boom", "x"), ("nan", "nan"), ("raise", "raise")]
    write(repo / "datasets/demo/rows.jsonl", "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows))
    config = load_experiment(repo, "demo")
    experiment(config)
    code = cli(repo, "-u", "demo", "--report-dir", str(tmp_path / "report"))
    summary = _summary(tmp_path / "report")
    match = next(m for m in summary["metrics"] if m["metric"] == "match")
    assert (match["n"], match["n_valid"], match["n_nan"], match["n_error"]) == (5, 2, 1, 2)
    assert match["value"] == 1.0
    errors = next(s for s in summary["scores"] if s["score"] == "match")["errors"]
    assert "experiment line failed" in errors["2"] and "evaluator broke on this row" in errors["4"]
    assert next(m for m in summary["metrics"] if m["metric"] == "match_rate")["value"] == pytest.approx(2 / 3)
    error_rate = next(m for m in summary["metrics"] if m["metric"] == "error_rate")
    assert error_rate["value"] == pytest.approx(0.2)
    assert code == 0  # match 1.0 >= 0.9 over the usable rows; the error rows are reported, not hidden
    html = (tmp_path / "report" / "report.html").read_text()
    assert "1 NaN, 2 errored row(s)" in html


def test_evaluate_without_experiment_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "empty"))
    assert cli(REPO, "-u", "qa") == 2


@pytest.mark.promptflow
def test_an_earlier_experiment_in_the_ledger_serves_as_baseline(classification, capsys):
    code = cli(REPO, "-u", "classification", "--experiment", classification["terse"], "--baseline",
               f"experiment:{classification['all']}", "--report-dir", str(classification["reports"] / "ref"))
    summary = _summary(classification["reports"] / "ref")
    assert code == 1 and summary["baseline"]["variant"] == "summarize.full+classify.careful"
    assert summary["gates"][-1]["status"] == "fail"
    assert cli(REPO, "-u", "classification", "--experiment", classification["all"], "--baseline",
               "no-such-thing") == 2
    assert "neither a summary.json nor an experiment" in capsys.readouterr().err
