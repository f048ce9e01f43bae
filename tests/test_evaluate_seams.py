"""The seam between experiment and evaluate, through the CLI:

- `run evaluate` scores the latest experiment only if this checkout would make the same runs
  (flow hash, config, datasets); otherwise it refuses (exit 2) naming what changed and the fix.
  An experiment named with --experiment is evaluated as it is, and every report names its flow hash.
  (On the demo use case on the python engine: the check is genaiops', not the engine's.)
- failed experiment lines count the same way on a first evaluation and after a rerun merged them:
  never scored, and the n every report shows is the denominator the value is over. (On a copy of
  the classification sample, `-e pr`: 10 tickets, real promptflow runs against the LLM simulator,
  the first evaluation linked to the promptflow run.)
"""

from __future__ import annotations

import json

import pytest
from deploy_helpers import copy_use_case, edited, run_cli, use_small_pr_overlay
from repo_factory import make_repo, use_code_evaluator

UC = "classification"


@pytest.fixture
def repo(tmp_path, state_dir):
    root = copy_use_case(tmp_path / "repo", UC)
    use_small_pr_overlay(root)
    return root


EXACT = """\
def score(groundtruth, prediction):
    return {"accuracy": float(groundtruth == prediction)}


def summarize(rows):
    return {}
"""


@pytest.fixture
def demo(tmp_path, state_dir):
    """The demo use case on the python engine, scored by a code evaluator with an accuracy gate."""
    root = make_repo(tmp_path / "repo", engine="python")
    use_code_evaluator(root, "evaluators/exact.py", EXACT, "{primary_metric: accuracy}",
                       '\n  - {metric: accuracy, op: ">=", threshold: 0.5}')
    return root


def _run(repo, capsys, phase: str, *argv: str, uc: str = UC) -> tuple[int, str, str]:
    return run_cli(["--repo", str(repo), "run", phase, "-u", uc, "--no-progress", *argv], capsys)


def _reports(folder) -> dict:
    return {"summary": json.loads((folder / "summary.json").read_text()),
            "md": (folder / "summary.md").read_text(), "html": (folder / "report.html").read_text(),
            "junit": (folder / "junit.xml").read_text()}


def test_evaluate_refuses_the_latest_experiment_of_another_checkout_and_names_what_changed(demo, tmp_path,
                                                                                          capsys):
    code, out, err = _run(demo, capsys, "experiment", uc="demo")
    assert code == 0, err
    code, _, err = _run(demo, capsys, "evaluate", "--report-dir", str(tmp_path / "fresh"), uc="demo")
    assert code == 0, err  # this checkout made the latest experiment: scored
    fresh = _reports(tmp_path / "fresh")["summary"]
    ran, experiment_id = fresh["best"]["flow_hash"], fresh["experiment_id"]
    assert ran.startswith("sha256:")

    flow = demo / "flows/demo/standard"
    dataset = demo / "datasets/demo/rows.jsonl"
    config = demo / "configs/demo/experiment.yaml"
    fix = "run `genaiops run experiment -u demo` first"
    for path, old, new, changed in (
            (flow / "normalize.py", "", "\n# answer with the category only\n", "flow hash"),
            (dataset, "", '{"text": "Where is my parcel?", "label": "where is my parcel?"}\n',
             "dataset rows: datasets/demo/rows.jsonl changed"),
            (config, "      text: ${data.text}", "      text: ${data.label}",
             "config: the column mapping of dataset rows")):
        with edited(path, old, new):
            code, out, err = _run(demo, capsys, "evaluate", "--report-dir", str(tmp_path / "x"), uc="demo")
            assert code == 2, (changed, out, err)
            assert f"the latest experiment {experiment_id} was not made from this checkout" in err
            assert changed in err and fix in err and f"--experiment {experiment_id}" in err
            assert "Traceback" not in err and not (tmp_path / "x").exists()

    with edited(flow / "normalize.py", "", "\n# answer with the category only\n"):
        code, out, err = _run(demo, capsys, "evaluate", "--experiment", experiment_id,
                              "--report-dir", str(tmp_path / "named"), uc="demo")
        assert code == 0, err  # named explicitly: evaluated as it is ...
        reports = _reports(tmp_path / "named")
    summary = reports["summary"]  # ... and every report says which flow it ran
    assert summary["flow_hash"] == ran and summary["best"]["flow_hash"] == ran
    assert any(c.startswith("flow hash: the experiment ran " + ran[:19]) for c in summary["checkout_changes"])
    assert ran in reports["md"] and "not this checkout" in reports["md"]
    assert ran in reports["html"] and "not this checkout" in reports["html"]
    assert f'name="flow_hash" value="{ran}"' in reports["junit"] and 'name="checkout_changes"' in reports["junit"]
    assert f"flow hash evaluated: {ran}" in out and "not this checkout" in err


@pytest.mark.promptflow  # the first evaluation links the promptflow run (mode "run")
def test_failed_lines_count_the_same_on_first_evaluation_and_after_a_rerun_merged_them(repo, tmp_path, capsys):
    """normalize raises on the tickets the simulator calls shipping (tolerated: 0.3). The first evaluation links
    the promptflow run; the rerun of the failed lines merges two runs, so the second evaluates from
    the ledger. Both must score the same 8 rows and say so."""
    (repo / "configs/classification/experiment.seams.yaml").write_text(
        (repo / "configs/classification/experiment.pr.yaml").read_text() + """\
runtime:
  worker_count: 2
  max_parallel: 1
  line_timeout_sec: 60
  failed_line_tolerance: 0.3
  retries: {max_attempts: 1, backoff_sec: 0.1}
gates:
  - {metric: accuracy, op: ">=", threshold: 0.8}
""")
    normalize = repo / "flows/classification/standard/normalize.py"
    normalize.write_text(normalize.read_text().replace(
        "    words = re.findall", "    if 'shipping' in (label or '').lower():\n"
        "        raise RuntimeError('this flow breaks on shipping tickets')\n    words = re.findall"))
    results = []
    for attempt in ("first", "merged"):
        code, _, err = _run(repo, capsys, "experiment", "-e", "seams")
        assert code == 0, err
        code, out, err = _run(repo, capsys, "evaluate", "-e", "seams", "--report-dir", str(tmp_path / attempt))
        results.append((code, _reports(tmp_path / attempt)))
    (first_code, first), (merged_code, merged) = results
    assert [e["mode"] for e in merged["summary"]["evaluations"]] == ["data"]  # the rerun merged two runs

    def accuracy(summary) -> dict:
        entry = next(m for m in summary["metrics"] if m["metric"] == "accuracy")
        return {k: entry[k] for k in ("value", "n", "n_valid", "n_error")}

    failed = first["summary"]["leaderboard"][0]["lines_failed"]
    assert failed >= 1 and merged["summary"]["leaderboard"][0]["lines_failed"] == failed
    assert accuracy(first["summary"]) == accuracy(merged["summary"])
    assert accuracy(first["summary"]) | {"value": None} == {"value": None, "n": 10, "n_valid": 10 - failed,
                                                            "n_error": failed}
    assert first_code == merged_code and first["summary"]["verdict"] == merged["summary"]["verdict"]
    shown = f"over {10 - failed} of 10 rows, {failed} failed or errored not scored"
    for reports in (first, merged):  # the n shown is the denominator used
        assert shown in reports["summary"]["gates"][0]["message"]
        assert shown in reports["md"] and shown in reports["junit"] and shown in reports["html"]
