"""How genaiops spends promptflow's start-up: flex and prompty variants in one batch, warm workers
serving every phase of a command, and an orchestrator that never imports promptflow itself.
Real promptflow runs against the bundled LLM simulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genaiops.cli import main
from genaiops.config import load_experiment
from genaiops.engines.base import BatchJob
from genaiops.engines.promptflow.local import LocalRunner
from genaiops.phases.context import PhaseContext
from genaiops.phases.experiment import ExperimentOptions, run_experiment
from genaiops.scaffold import scaffold_use_case
from genaiops.simulator import SimulatorServer
from genaiops.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
FAST = "runtime:\n  max_parallel: 2\n  line_timeout_sec: 60\n  retries: {max_attempts: 2, backoff_sec: 0.1}\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for folder in ("flows", "configs", "datasets"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
    (root / "configs/qa/experiment.fast.yaml").write_text(
        "datasets:\n  - name: questions_pr\n    source: datasets/qa/questions_pr.jsonl\n"
        "    mappings: {question: \"${data.question}\", context: \"${data.context}\"}\n"
        "evaluators: []\n" + FAST)
    (root / "configs/classification/experiment.judged.yaml").write_text(
        "datasets:\n  - name: tickets_pr\n    source: datasets/classification/tickets_pr.jsonl\n"
        "    mappings: {text: \"${data.text}\"}\n"
        "evaluators:\n  - name: accuracy\n    flow: flows/classification/evaluation\n    datasets:\n"
        "      - name: tickets_pr_eval\n        reference: tickets_pr\n"
        "        mappings: {groundtruth: \"${data.label}\", prediction: \"${run.outputs.category}\"}\n"
        + "  - name: judge\n    flow: flows/classification/judge\n    datasets:\n"
          "      - name: tickets_pr_judge\n        reference: tickets_pr\n"
          "        mappings: {text: \"${data.text}\", prediction: \"${run.outputs.category}\"}\n"
        + FAST)
    return root


def experiment(repo, sim, use_case="qa", env="fast", **options):
    with PhaseContext.for_config(load_experiment(repo, use_case, env), simulator=sim,
                                 show_progress=False) as ctx:
        return run_experiment(ctx, ExperimentOptions(**options))


@pytest.mark.promptflow
def test_flex_variants_run_as_one_batch_with_each_variants_own_outputs_and_tokens(repo, state_dir):
    with SimulatorServer(rules_path=repo / "configs/qa/simulator.yaml") as sim:
        together = experiment(repo, sim, variants="all")
        alone = {v: experiment(repo, sim, variants=v, force=True).runs[0]
                 for v in ("concise", "detailed")}
    assert together.ok, together.failures
    assert len({r.engine_run for r in together.runs}) == 1  # one promptflow run, one worker pool
    ledger = Workspace.for_repo(repo).ledger()
    for run in together.runs:
        single = alone[run.variant]
        assert run.key == single.key  # the same run key: batching is not part of identity
        assert [r["outputs"] for r in ledger.read_outputs(run.key)] == \
            [r["outputs"] for r in ledger.read_outputs(single.key)]
        assert (run.prompt_tokens, run.completion_tokens) == \
            (single.prompt_tokens, single.completion_tokens) != (0, 0)
        assert run.latency_p50_s is not None
    assert together.runs[0].completion_tokens != together.runs[1].completion_tokens


@pytest.mark.promptflow
def test_a_dag_run_counts_every_token_while_its_run_folder_keeps_no_call_traces(repo, state_dir):
    """Line processes send their run infos to the batch parent without `api_calls`, the full trace
    of every LLM call (`fastbatch.light_line_results`): the token counts genaiops reads from
    `system_metrics` must still add up to what the endpoint charged, and the prompts and raw
    answers no longer land in the run folder's artifacts."""
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml") as sim:
        result = experiment(repo, sim, use_case="classification", env="judged", force=True)
        charged = sim.stats.snapshot()
    assert result.ok, result.failures
    (run,) = result.runs
    assert run.lines_ok == 10 and charged["requests"] == 20  # summarize + classify a line
    assert (run.prompt_tokens, run.completion_tokens) == (charged["prompt_tokens"], charged["completion_tokens"])
    from genaiops.engines.promptflow.env import promptflow_home

    folder = promptflow_home() / ".runs" / run.engine_run
    records = [json.loads(line) for part in ("flow_artifacts", "node_artifacts")
               for path in (folder / part).rglob("*.jsonl") for line in path.read_text().splitlines() if line]
    assert len(records) == 10 + 10 * 3  # a line, and each of its three nodes
    assert all(not record["run_info"].get("api_calls") for record in records)
    assert "You are a meticulous support triage agent" not in "".join(json.dumps(r) for r in records)


@pytest.mark.promptflow
def test_a_flex_variant_that_cannot_start_fails_only_its_own_lines(repo, state_dir):
    config_file = repo / "configs/qa/experiment.broken.yaml"
    config_file.write_text((repo / "configs/qa/experiment.fast.yaml").read_text() +
                           "variants:\n  - name: good\n    init: {style: concise}\n"
                           "  - name: bad\n    init: {style: shouting}\n")
    with SimulatorServer(rules_path=repo / "configs/qa/simulator.yaml") as sim:
        result = experiment(repo, sim, env="broken", variants="all")
    runs = {r.variant: r for r in result.runs}
    assert runs["good"].lines_failed == 0 and runs["good"].lines_ok == 8
    assert runs["bad"].lines_ok == 0 and runs["bad"].lines_failed == 8
    assert "style must be one of" in runs["bad"].errors[0]["message"]
    assert [f["variant"] for f in result.failures] == ["bad"]


@pytest.mark.promptflow
def test_prompty_variants_run_forked_in_one_batch(tmp_path, state_dir):
    scaffold_use_case(tmp_path, "tone", "prompty")
    (tmp_path / "configs/tone/experiment.fast.yaml").write_text("evaluators: []\n" + FAST)
    with SimulatorServer(rules_path=tmp_path / "configs/tone/simulator.yaml") as sim:
        both = experiment(tmp_path, sim, use_case="tone", variants="all")
        one = experiment(tmp_path, sim, use_case="tone", variants="precise", force=True)
    assert both.ok and one.ok, (both.failures, one.failures)
    assert len({r.engine_run for r in both.runs}) == 1
    rows = Workspace.for_repo(tmp_path).ledger().read_outputs(one.runs[0].key)
    assert all(set(row["outputs"]) == {"output"} for row in rows)  # named like a plain prompty run
    assert sim.stats.snapshot()["by_rule"].keys() >= {"precise", "precise_hot"}  # each its temperature


def _count_workers(monkeypatch) -> list:
    from genaiops.engines.promptflow import local

    started = []
    real = local._Pool.start

    def start(self, forkserver=True):
        worker = real(self, forkserver)
        started.append(worker)
        return worker

    monkeypatch.setattr(local._Pool, "start", start)
    return started


@pytest.mark.promptflow
def test_verdict_runs_init_experiment_and_evaluate_on_the_same_warm_workers(repo, state_dir,
                                                                            monkeypatch, capsys):
    started = _count_workers(monkeypatch)
    code = main(["--repo", str(repo), "run", "verdict", "-u", "classification", "-e", "judged",
                 "--variants", "all", "--max-parallel", "2", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0, payload
    assert payload["init"]["ok"] and payload["experiment"]["ok"]
    assert payload["evaluate"]["verdict"] == "pass"
    assert len(started) == 2  # --max-parallel workers, each importing promptflow once, for 3 phases
    evaluations = {(r["evaluator"], r["variant"]) for r in payload["evaluate"]["metrics"]
                   if r["evaluator"] in {"accuracy", "judge"}}
    assert len(evaluations) == 6  # 2 evaluators x 3 variants
    assert payload["experiment"]["gateway"]["requests"] == {"flow": 3 * 10 * 2}  # before evaluate


@pytest.mark.promptflow
def test_llm_judges_call_through_the_evaluators_pool(repo, state_dir, capsys):
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml") as sim:
        with PhaseContext.for_config(load_experiment(repo, "classification", "judged"),
                                     simulator=sim, show_progress=False) as ctx:
            assert run_experiment(ctx, ExperimentOptions()).ok
            from genaiops.phases.evaluate import EvaluateOptions, run_evaluate

            summary = run_evaluate(ctx, EvaluateOptions(write_reports=False))
            pools = ctx.gateway.snapshot()["requests"]
    assert summary.verdict == "pass"
    assert pools == {"flow": 10 * 2, "evaluators": 10}
    assert sim.stats.snapshot()["by_rule"]["judge"] == 10


@pytest.mark.promptflow
def test_the_orchestrator_never_imports_promptflow(repo, tmp_path):
    """Connections are saved and batches run by warm workers; the CLI process stays light."""
    script = (
        "import sys\nfrom genaiops.cli import main\n"
        f"code = main(['--repo', {str(repo)!r}, 'run', 'experiment', '-u', 'qa', '-e', 'fast',"
        " '--no-progress'])\n"
        "print(code, any(m == 'promptflow' or m.startswith('promptflow.') for m in sys.modules))\n")
    env = {**os.environ, "GENAIOPS_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr[-2000:]


@pytest.mark.promptflow
def test_a_warm_worker_runs_jobs_one_after_another_each_with_its_own_environment(tmp_path):
    flow = tmp_path / "env_flow"
    flow.mkdir()
    (flow / "flow.flex.yaml").write_text("entry: probe:probe\n")
    (flow / "probe.py").write_text(
        "import os\nfrom dataclasses import dataclass\n\n\n@dataclass\nclass Seen:\n"
        "    value: str\n    group: int\n\n\ndef probe(name: str) -> Seen:\n"
        "    return Seen(os.environ.get(name), os.getpgrp())\n")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"name": "GENAIOPS_TEST_MARKER"}) + "\n")
    runner = LocalRunner()
    try:
        results = []
        for number, env in enumerate([{"GENAIOPS_TEST_MARKER": "first"}, {}]):
            job = BatchJob(name=f"envprobe-{os.getpid()}-{number}", flow=str(flow), data=str(data),
                           column_mapping={"name": "${data.name}"}, member_suffixes=[""],
                           worker_count=1, environment=env)
            results.append(runner.run(job))
    finally:
        runner.close()
    outputs = [r.members[0].lines[0].outputs for r in results]
    assert [o["value"] for o in outputs] == ["first", None]  # the job's env, for that job only
    assert outputs[0]["group"] == outputs[1]["group"]  # the same warm worker ran both
