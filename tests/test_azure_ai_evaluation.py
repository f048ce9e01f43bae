"""azure-ai-evaluation evaluators through the CLI: an offline one (F1) and an LLM judge
(RelevanceEvaluator) answered by the simulator through the gateway, each gating a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from repo_factory import CONFIG, make_repo, write

from genaiops.cli import main

pytest.importorskip("azure.ai.evaluation")

JUDGE_RULES = """\
rules:
  - name: relevance_judge
    when:
      prompt: "(?s)Relevance-Judge"
    reply: '{{"reason": "the reply restates the request", "score": 4, "status": "completed"}}'
"""

EVALUATORS = """\
evaluators:
  - name: f1
    kind: azure_ai_evaluation
    class: F1ScoreEvaluator
    datasets:
      - name: rows_eval
        reference: rows
        source: datasets/demo/{labels}.jsonl
        mappings: {{response: "${{run.outputs.category}}", ground_truth: "${{data.label}}"}}
  - name: rouge
    kind: azure_ai_evaluation
    class: RougeScoreEvaluator
    init: {{rouge_type: rougeL}}
    datasets:
      - name: rows_eval
        reference: rows
        source: datasets/demo/{labels}.jsonl
        mappings: {{response: "${{run.outputs.category}}", ground_truth: "${{data.label}}"}}
  - name: relevance
    kind: azure_ai_evaluation
    class: RelevanceEvaluator
    connection: llm
    model: judge-model
    datasets:
      - name: rows_eval
        reference: rows
        mappings: {{query: "${{data.text}}", response: "${{run.outputs.category}}"}}
gates:
  - {{metric: f1.f1_score, op: ">=", threshold: 0.9, min_samples: 1}}
  - {{metric: relevance.relevance, op: ">=", threshold: {relevance}, min_samples: 1}}
"""


ONE = """\
evaluators:
  - name: judge
    kind: azure_ai_evaluation
{extra}    datasets:
      - {{name: rows_eval, reference: rows, mappings: {{query: "${{data.text}}", response: "${{run.outputs.category}}"}}}}
"""
BAD = {"noclass": ONE.format(extra="    class: NoSuchEvaluator\n"),
       "noconnection": ONE.format(extra="    class: RelevanceEvaluator\n"),
       "unknownconnection": ONE.format(extra="    class: RelevanceEvaluator\n    connection: nope\n"),
       "noclasskey": ONE.format(extra="")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("azure-ai-evaluation")
    config = CONFIG.replace("datasets:\n", "simulator: {rules: configs/demo/simulator.yaml}\n"
                            "datasets:\n", 1).split("evaluators:")[0]
    repo = make_repo(root / "repo", config)
    write(repo / "configs/demo/simulator.yaml", JUDGE_RULES)
    write(repo / "datasets/demo/wrong.jsonl", "".join(
        json.dumps({"label": label}) + "\n" for label in ("refund please", "goodbye")))
    write(repo / "datasets/demo/right.jsonl", "".join(
        json.dumps({"label": label}) + "\n" for label in ("refund please", "hi")))
    for env, labels, relevance in (("ok", "right", 4), ("badf1", "wrong", 4),
                                   ("strictjudge", "right", 5)):
        write(repo / f"configs/demo/experiment.{env}.yaml",
              EVALUATORS.format(labels=labels, relevance=relevance))
    for env, block in BAD.items():
        write(repo / f"configs/demo/experiment.{env}.yaml", block)
    old = os.environ.get("GENAIOPS_STATE_DIR")
    os.environ["GENAIOPS_STATE_DIR"] = str(root / "state")
    assert main(["--repo", str(repo), "run", "experiment", "-u", "demo", "--no-progress"]) == 0
    yield repo
    if old is None:
        os.environ.pop("GENAIOPS_STATE_DIR", None)
    else:
        os.environ["GENAIOPS_STATE_DIR"] = old


def evaluate(repo: Path, env: str, folder: Path) -> tuple[int, dict]:
    code = main(["--repo", str(repo), "run", "evaluate", "-u", "demo", "-e", env, "--no-progress",
                 "--report-dir", str(folder)])
    return code, json.loads((folder / "summary.json").read_text())


def gate(summary: dict, metric: str) -> dict:
    return next(g for g in summary["gates"] if g["metric"] == metric)


def test_offline_f1_and_llm_judge_gate_a_run(demo, tmp_path):
    code, summary = evaluate(demo, "ok", tmp_path / "ok")
    assert code == 0, summary["gates"]
    assert gate(summary, "f1.f1_score")["status"] == "pass"
    relevance = next(m for m in summary["metrics"] if m["evaluator"] == "relevance"
                     and m["metric"] == "relevance")
    assert relevance["value"] == 4.0 and relevance["n_valid"] == 2
    rouge = {m["metric"]: m["value"] for m in summary["metrics"] if m["evaluator"] == "rouge"}
    assert rouge["rouge"] == 1.0 and rouge["rouge_precision"] == 1.0 and "rouge_recall" in rouge
    runs = {r["evaluator"]: r for r in summary["evaluations"]}
    assert runs["f1"]["kind"] == "azure_ai_evaluation" and runs["f1"]["status"] == "completed"
    # the judge's reason is kept per row and shown in the drill-down
    html = (tmp_path / "ok" / "report.html").read_text()
    assert "the reply restates the request" in html

    code, summary = evaluate(demo, "badf1", tmp_path / "badf1")
    assert code == 1 and gate(summary, "f1.f1_score")["status"] == "fail"

    code, summary = evaluate(demo, "strictjudge", tmp_path / "strict")
    assert code == 1 and gate(summary, "relevance.relevance")["status"] == "fail"
    runs = {r["evaluator"]: r for r in summary["evaluations"]}
    assert runs["relevance"]["reused"] is True  # same class, connection, package version, rows


def test_llm_judge_calls_go_through_the_gateway(demo):
    """The judge's model_config points at the gateway's evaluators pool, not at the simulator."""
    from genaiops.config import load_experiment
    from genaiops.phases.context import PhaseContext
    from genaiops.phases.evaluate import EvaluateOptions, run_evaluate

    with PhaseContext.for_config(load_experiment(demo, "demo", "ok")) as ctx:
        ctx.show_progress = False
        summary = run_evaluate(ctx, EvaluateOptions(force=True, write_reports=False))
        counters = ctx.gateway.snapshot()
    assert summary.verdict == "pass"
    # the gateway scheduled calls for the judge's model (the flow itself calls no LLM)
    judged = [key for key in counters["upstreams"] if key.endswith(" judge-model")]
    assert judged, counters["upstreams"]
    assert "evaluators" in json.dumps(counters), counters


@pytest.mark.parametrize("env,message", [
    ("noclass", "azure-ai-evaluation has no evaluator class 'NoSuchEvaluator'"),
    ("noconnection", "RelevanceEvaluator is an LLM judge: it needs `connection:`"),
    ("unknownconnection", "no connection named 'nope'"),
    ("noclasskey", "needs exactly one of `flow`, `code` or `kind: azure_ai_evaluation` with `class:`"),
])
def test_a_wrong_evaluator_is_a_config_error(demo, tmp_path, capsys, env, message):
    code = main(["--repo", str(demo), "run", "evaluate", "-u", "demo", "-e", env, "--no-progress",
                 "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
