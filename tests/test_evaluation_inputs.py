"""What evaluation must not guess, through the CLI: which source a gate metric comes from,
numeric-string scores, evaluator init values, rows joined on a key column, and why an evaluation
run failed. The experiment runs on the python engine (evaluation, not the engine, is under test);
the flex evaluator is a real promptflow flow, run by promptflow under a python-engine use case."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from repo_factory import make_repo, write, write_normalize

from genaiops.cli import main

NORMALIZE = """\
if text == "boom":
    raise ValueError("the flow failed on this line")
return text.strip().lower()
"""

# an LLM judge answers numbers as text; its aggregate logs an `error_rate` of its own
JUDGE = """\
def score(groundtruth, prediction):
    return {"score": "1" if groundtruth == prediction else "0"}


def summarize(rows):
    return {"error_rate": 0.0}
"""

FLEX_JUDGE = """\
from dataclasses import dataclass


@dataclass
class Grade:
    weighted: float


class Judge:
    def __init__(self, weight: float = 1.0, broken: bool = False):
        if broken:
            raise ValueError("the judge model is not configured")
        self.weight = weight

    def __call__(self, groundtruth: str, prediction: str) -> Grade:
        return Grade(weighted=self.weight * float(groundtruth == prediction))
"""

FLEX_JUDGE_YAML = """\
entry: judge:Judge
init:
  weight: {type: double, default: 1.0}
  broken: {type: bool, default: false}
inputs:
  groundtruth: {type: string}
  prediction: {type: string}
"""

ROWS = [(1, "Refund please", "refund please"), (2, "Hi", "hi"), (3, "boom", "boom"),
        (4, "Late parcel", "late parcel")]

CODE_EVALUATOR = """\
evaluators:
  - name: exact
    code: evaluators/judge.py:score
    aggregate: summarize
    datasets:
      - name: rows_eval
        reference: rows
        mappings: {groundtruth: "${data.label}", prediction: "${run.outputs.category}"}
"""


def evaluator_block(extra: str = "", source: str = "", flow: str = "flows/demo/judge") -> str:
    return (f"evaluators:\n  - name: judge\n    flow: {flow}\n{extra}"
            "    datasets:\n      - name: rows_eval\n        reference: rows\n" + source +
            '        mappings: {groundtruth: "${data.label}", prediction: "${run.outputs.category}"}\n')


OVERLAYS = {
    "collide": CODE_EVALUATOR + 'gates:\n  - {metric: error_rate, op: "==", threshold: 0}\n',
    "namespaced": CODE_EVALUATOR + 'gates:\n  - {metric: builtin.error_rate, op: "==", threshold: 0}\n'
                                   '  - {metric: exact.error_rate, op: "==", threshold: 0}\n',
    "numeric": CODE_EVALUATOR + 'gates:\n  - {metric: score, op: ">=", threshold: 0.9}\n',
    "keyed": CODE_EVALUATOR.replace("        reference: rows\n",
                                    "        reference: rows\n        source: datasets/demo/labels.jsonl\n"
                                    "        key_column: id\n")
    + 'gates:\n  - {metric: score, op: ">=", threshold: 0.9}\n',
    "keyed_repeats": "datasets:\n  - name: rows\n    source: datasets/demo/rows.jsonl\n    repeats: 2\n"
    '    mappings: {text: "${data.text}"}\nruntime: {failed_line_tolerance: 2, worker_count: 2}\n'
    + CODE_EVALUATOR.replace("        reference: rows\n",
                             "        reference: rows\n        source: datasets/demo/labels.jsonl\n"
                             "        key_column: id\n")
    + 'gates:\n  - {metric: score, op: ">=", threshold: 0.9}\n',
    "init": evaluator_block("    init: {weight: 2.5}\n")
    + 'gates:\n  - {metric: weighted, op: ">=", threshold: 2.5}\n',
    "broken": evaluator_block("    init: {broken: true}\n")
    + 'gates:\n  - {metric: weighted, op: ">=", threshold: 0}\n',
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One experiment (one of four lines fails in the flow), evaluated under several overlays."""
    root = tmp_path_factory.mktemp("evaluation-inputs")
    repo = make_repo(root / "repo", engine="python")
    write_normalize(repo, NORMALIZE)
    write(repo / "evaluators/judge.py", JUDGE)
    write(repo / "flows/demo/judge/judge.py", FLEX_JUDGE)
    write(repo / "flows/demo/judge/flow.flex.yaml", FLEX_JUDGE_YAML)
    write(repo / "datasets/demo/rows.jsonl",
          "".join(json.dumps({"id": i, "text": t, "label": l}) + "\n" for i, t, l in ROWS))
    write(repo / "datasets/demo/labels.jsonl",  # the same labels, in another order
          "".join(json.dumps({"id": i, "label": l}) + "\n" for i, _t, l in reversed(ROWS)))
    write(repo / "configs/demo/experiment.yaml", (repo / "configs/demo/experiment.yaml").read_text()
          + "runtime: {failed_line_tolerance: 1, worker_count: 2}\n")
    for env, text in OVERLAYS.items():
        write(repo / f"configs/demo/experiment.{env}.yaml", text)
    old = os.environ.get("GENAIOPS_STATE_DIR")
    os.environ["GENAIOPS_STATE_DIR"] = str(root / "state")
    assert main(["--repo", str(repo), "run", "experiment", "-u", "demo", "--no-progress"]) == 0
    yield repo
    if old is None:
        os.environ.pop("GENAIOPS_STATE_DIR", None)
    else:
        os.environ["GENAIOPS_STATE_DIR"] = old


def evaluate(repo: Path, env: str, tmp_path: Path) -> tuple[int, dict]:
    code = main(["--repo", str(repo), "run", "evaluate", "-u", "demo", "-e", env, "--no-progress",
                 "--report-dir", str(tmp_path)])
    return code, json.loads((tmp_path / "summary.json").read_text())


def metric(summary: dict, name: str, evaluator: str | None = None) -> dict:
    return next(m for m in summary["metrics"] if m["metric"] == name
                and (evaluator is None or m["evaluator"] == evaluator))


def test_a_bare_metric_two_sources_report_fails_its_gate_and_names_both(demo, tmp_path):
    code, summary = evaluate(demo, "collide", tmp_path)
    [gate] = summary["gates"]
    assert code == 1 and gate["status"] == "fail"
    assert "ambiguous" in gate["message"]
    assert "builtin.error_rate" in gate["message"] and "exact.error_rate" in gate["message"]


def test_namespaced_metrics_use_their_own_source_and_say_so(demo, tmp_path):
    code, summary = evaluate(demo, "namespaced", tmp_path)
    builtin, own = summary["gates"]
    assert code == 1
    assert builtin["status"] == "fail" and builtin["value"] == pytest.approx(0.25)
    assert "error_rate=0.25" in builtin["message"] and "from builtin" in builtin["message"]
    assert own["status"] == "pass" and "from evaluator exact" in own["message"]
    assert metric(summary, "error_rate", "builtin")["value"] == pytest.approx(0.25)


def test_numeric_strings_from_a_judge_are_scores(demo, tmp_path):
    code, summary = evaluate(demo, "numeric", tmp_path)
    score = metric(summary, "score")
    assert (score["value"], score["n_valid"], score["n_error"]) == (1.0, 3, 1)
    assert code == 0, summary["gates"]


def test_evaluation_rows_join_on_the_key_column(demo, tmp_path):
    """The labels file lists the rows in reverse order: joined by row number every score is 0."""
    code, summary = evaluate(demo, "keyed", tmp_path)
    score = metric(summary, "score")
    assert (score["value"], score["n_valid"]) == (1.0, 3)
    assert code == 0, summary["gates"]


def test_the_key_column_joins_every_repeat_of_a_row(demo, tmp_path, monkeypatch):
    """`repeats: 2` on the dataset: each labelled row (listed in reverse order) scores both calls
    of its row, and the interval is clustered over the 4 rows, not the 8 calls. A copy of the
    repository with its own state, so the other tests' latest experiment stays theirs."""
    repo = Path(shutil.copytree(demo, tmp_path / "repo"))
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "state"))
    assert main(["--repo", str(repo), "run", "experiment", "-u", "demo", "-e", "keyed_repeats",
                 "--no-progress"]) == 0
    code, summary = evaluate(repo, "keyed_repeats", tmp_path / "report")
    score = metric(summary, "score")
    assert (score["value"], score["method"], score["n"]) == (1.0, "cluster_bootstrap", 4)
    assert summary["evaluations"][0]["status"] == "completed"
    assert code == 0, summary["gates"]


@pytest.mark.promptflow  # the evaluator is a promptflow flex flow
def test_a_flex_evaluator_receives_its_init_values(demo, tmp_path):
    code, summary = evaluate(demo, "init", tmp_path)
    assert metric(summary, "weighted")["value"] == pytest.approx(2.5)
    assert code == 0, summary["gates"]


@pytest.mark.promptflow  # promptflow's error from the flex evaluator's __init__
def test_a_failed_evaluation_run_shows_promptflows_error(demo, tmp_path, capsys):
    code, summary = evaluate(demo, "broken", tmp_path)
    [run] = summary["evaluations"]
    assert code == 1 and run["status"] == "failed"
    assert "the judge model is not configured" in run["error"]
    assert "the judge model is not configured" in capsys.readouterr().err
