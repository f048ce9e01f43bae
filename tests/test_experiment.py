"""Experiment phase end to end: real promptflow runs of the sample flows against the LLM simulator;
what the phase decides whatever the engine (a failed run not reused, the JSON of a failed run) on
the scaffolded python-engine use case `tone`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genaiops.cli import main
from genaiops.config import load_experiment
from genaiops.config.variants import select_variants
from genaiops.engines.promptflow.flowspec import read_flow
from genaiops.errors import RunFailed, UsageError
from genaiops.phases.context import PhaseContext
from genaiops.phases.experiment import ExperimentOptions, run_experiment
from genaiops.simulator import SimulatorServer
from genaiops.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
CANARY = "canary-sk-7f3a9e1d2c"

FAST_OVERLAY = """\
datasets:
  - name: tickets_pr
    source: datasets/classification/tickets_pr.jsonl
    mappings: {text: "${data.text}"}
  - name: tickets_mini
    source: datasets/classification/tickets_mini.jsonl
    mappings: {text: "${data.text}"}
evaluators: []
runtime:
  worker_count: 2
  max_parallel: 2
  line_timeout_sec: 30
  retries: {max_attempts: 2, backoff_sec: 0.1}
"""


QA_FAST_OVERLAY = """\
datasets:
  - name: questions_pr
    source: datasets/qa/questions_pr.jsonl
    mappings: {question: "${data.question}", context: "${data.context}"}
evaluators: []
runtime:
  worker_count: 2
  line_timeout_sec: 60
  retries: {max_attempts: 2, backoff_sec: 0.1}
"""


TONE_FAST_OVERLAY = """\
datasets:
  - name: tone_mini
    source: datasets/tone/tone_mini.jsonl
    mappings: {text: "${data.text}"}
evaluators: []
runtime:
  worker_count: 2
  max_parallel: 2
  line_timeout_sec: 30
  retries: {max_attempts: 2, backoff_sec: 0.1}
"""


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    """`genaiops new tone --kind python` (a function calling the LLM through `openai_client`) with
    a `fast` overlay of its first 4 rows."""
    root = tmp_path_factory.mktemp("tone")
    for folder in ("flows", "configs", "datasets"):
        (root / folder).mkdir()
    assert main(["--repo", str(root), "new", "tone", "--kind", "python"]) == 0
    rows = (root / "datasets/tone/tone.jsonl").read_text().splitlines()[:4]
    (root / "datasets/tone/tone_mini.jsonl").write_text("\n".join(rows) + "\n")
    (root / "configs/tone/experiment.fast.yaml").write_text(TONE_FAST_OVERLAY)
    return root


@pytest.fixture
def tone_sim(tone):
    with SimulatorServer(rules_path=tone / "configs/tone/simulator.yaml") as server:
        yield server


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A private copy of the sample repository with a `fast` overlay (small datasets)."""
    root = tmp_path_factory.mktemp("repo")
    for folder in ("flows", "configs", "datasets"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
    rows = (REPO / "datasets/classification/tickets_pr.jsonl").read_text().splitlines()[:4]
    (root / "datasets/classification/tickets_mini.jsonl").write_text("\n".join(rows) + "\n")
    (root / "configs/classification/experiment.fast.yaml").write_text(FAST_OVERLAY)
    (root / "configs/classification/experiment.patient.yaml").write_text(
        FAST_OVERLAY.replace("{max_attempts: 2, backoff_sec: 0.1}",
                             "{max_attempts: 100, backoff_sec: 0.1, max_total_sec: 1}"))
    (root / "configs/qa/experiment.fast.yaml").write_text(QA_FAST_OVERLAY)
    for use_case, overlay in (("classification", FAST_OVERLAY), ("qa", QA_FAST_OVERLAY)):
        (root / f"configs/{use_case}/experiment.nogateway.yaml").write_text(
            overlay.replace("runtime:\n", "runtime:\n  gateway: {enabled: false}\n"))
        (root / f"configs/{use_case}/experiment.strict.yaml").write_text(  # 2 throttled attempts
            overlay.replace("backoff_sec: 0.1}", "backoff_sec: 0.1, max_throttled: 2}"))
    return root


@pytest.fixture
def sim(repo):
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml") as server:
        yield server


def experiment(repo, sim, **options):
    config = load_experiment(repo, options.pop("use_case", "classification"), options.pop("env", "fast"))
    with PhaseContext.for_config(config, simulator=sim, show_progress=False) as ctx:
        return run_experiment(ctx, ExperimentOptions(**options))


def variants(config, selector, **kwargs):
    return select_variants(config, read_flow(config.flow), selector, **kwargs)


# -- variant selection (no promptflow) ------------------------------------------------------------

def test_variant_modes_select_the_expected_run_sets(repo):
    config = load_experiment(repo, "classification")
    labels = lambda mode: [v.label for v in variants(config, mode)]  # noqa: E731
    assert labels("defaults") == ["summarize.full+classify.careful"]
    assert labels("all") == ["summarize.full+classify.careful", "summarize.brief+classify.careful",
                             "summarize.full+classify.terse"]
    assert sorted(labels("grid")) == sorted(["summarize.full+classify.careful", "summarize.full+classify.terse",
                                             "summarize.brief+classify.careful", "summarize.brief+classify.terse"])
    assert labels("classify.terse+summarize.brief,classify.careful") == [
        "summarize.brief+classify.terse", "summarize.full+classify.careful"]
    with pytest.raises(UsageError, match="over --max-runs 3"):
        variants(config, "grid", max_runs=3)
    with pytest.raises(UsageError, match="unknown variant 'loud' of node 'classify'"):
        variants(config, "classify.loud")
    with pytest.raises(UsageError, match="unknown node 'rank'"):
        variants(config, "rank.v1")


def test_flex_variants_come_from_config(repo):
    config = load_experiment(repo, "qa")
    assert [v.label for v in variants(config, "all")] == ["concise", "detailed"]
    assert [v.init["style"] for v in variants(config, "detailed")] == ["detailed"]
    with pytest.raises(UsageError, match="unknown variant 'verbose'"):
        variants(config, "verbose")


def test_grid_count_is_printed_and_guarded(repo, state_dir, capsys):
    code = main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
                 "--variants", "grid", "--max-runs", "2"])
    assert code == 2
    assert "selects 4 variant runs, over --max-runs 2" in capsys.readouterr().err


def test_two_variants_of_one_node_in_one_run_is_a_usage_error(repo, state_dir, capsys):
    code = main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
                 "--variants", "classify.careful+classify.terse"])
    assert code == 2
    assert "names node 'classify' twice" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["nan", "inf", "-1"])
def test_budget_must_be_a_finite_amount(repo, state_dir, capsys, budget):
    with pytest.raises(SystemExit) as info:
        main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
              "--budget", budget])
    assert info.value.code == 2
    assert "--budget" in capsys.readouterr().err


# -- real runs ----------------------------------------------------------------------------------

@pytest.mark.promptflow
def test_runs_reuse_and_force(repo, state_dir, sim):
    first = experiment(repo, sim, variants="all", datasets=["tickets_mini"])
    assert first.ok, first
    assert [r.variant for r in first.runs] == ["summarize.full+classify.careful",
                                                     "summarize.brief+classify.careful",
                                                     "summarize.full+classify.terse"]
    assert all(r.lines_ok == 4 and r.lines_failed == 0 and not r.reused for r in first.runs)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in first.runs)
    assert all(r.latency_p50_s is not None for r in first.runs)
    calls = sim.stats.requests
    assert calls == 3 * 4 * 2  # 3 variants x 4 lines x 2 LLM nodes, all in one composite run
    assert len({r.engine_run for r in first.runs}) == 1

    ledger = Workspace.for_repo(repo).ledger()
    outputs = ledger.read_outputs(first.runs[0].key)
    assert [row["line"] for row in outputs] == [0, 1, 2, 3]
    assert all(row["outputs"]["category"] in {"billing", "technical", "account", "shipping", "other"}
               for row in outputs)
    assert outputs[0]["inputs"]["text"]  # the dataset row travels with the outputs

    second = experiment(repo, sim, variants="all", datasets=["tickets_mini"])
    assert all(r.reused for r in second.runs)
    # no run: one probe asks which model gpt-4o-mini serves now (docs/trust.md)
    assert sim.stats.requests == calls + 1
    assert [r.key for r in second.runs] == [r.key for r in first.runs]

    grid = experiment(repo, sim, variants="grid", datasets=["tickets_mini"])
    assert sum(not r.reused for r in grid.runs) == 1  # only brief+terse is new
    assert sim.stats.requests == calls + 1 + 1 + 4 * 2

    forced = experiment(repo, sim, variants="defaults", datasets=["tickets_mini"], force=True)
    assert not forced.runs[0].reused
    assert sim.stats.requests == calls + 2 + 4 * 2 + 4 * 2  # --force reuses nothing: no probe


@pytest.mark.promptflow
def test_variants_score_differently(repo, state_dir, sim):
    result = experiment(repo, sim, variants="classify.careful,classify.terse", datasets=["tickets_pr"])
    ledger = Workspace.for_repo(repo).ledger()
    accuracy = {}
    for run in result.runs:
        rows = ledger.read_outputs(run.key)
        accuracy[run.variant] = sum(r["outputs"]["category"] == r["inputs"]["label"] for r in rows) / len(rows)
    assert accuracy["summarize.full+classify.careful"] > accuracy["summarize.full+classify.terse"]


@pytest.mark.promptflow
def test_flex_parameter_variants_run(repo, state_dir):
    with SimulatorServer(rules_path=repo / "configs/qa/simulator.yaml") as qa_sim:
        result = experiment(repo, qa_sim, use_case="qa", env="pr", variants="all")
    assert result.ok
    assert {r.variant for r in result.runs} == {"concise", "detailed"}
    ledger = Workspace.for_repo(repo).ledger()
    answers = {r.variant: [row["outputs"]["answer"] for row in ledger.read_outputs(r.key)]
               for r in result.runs}
    assert answers["concise"] != answers["detailed"]


@pytest.mark.promptflow
def test_429_then_success_passes(repo, state_dir, sim):
    """Retry-After is honoured within the limits (100 attempts, 1 s: three 0.2 s waits fit)."""
    sim.faults.add(kind="429", count=3, retry_after=0.2)
    result = experiment(repo, sim, env="patient", variants="defaults", datasets=["tickets_mini"],
                        force=True)
    assert result.ok
    assert result.runs[0].lines_failed == 0
    assert sim.stats.snapshot()["by_status"].get("429") == 3


@pytest.mark.promptflow
@pytest.mark.parametrize("env, account", [("strict", "LLM gateway gave up after 2 attempt(s)"),
                                          ("nogateway", "gave up after 2 attempt(s)")])
def test_429_with_retry_after_stops_at_max_attempts(repo, state_dir, sim, env, account):
    """promptflow-tools honours Retry-After on its own (101 tries a call): our limit holds anyway,
    in the LLM gateway (`max_throttled` 429s) and, without it, in the line workers."""
    sim.faults.add(kind="429", count=None, retry_after=0.05)
    result = experiment(repo, sim, env=env, variants="defaults", datasets=["tickets_mini"], force=True)
    assert result.runs[0].lines_failed == 4
    assert account in result.runs[0].errors[0]["message"]
    # 4 lines x the first LLM node x 2 attempts; the second node never runs
    assert sim.stats.snapshot()["by_status"].get("429") == 8


@pytest.mark.promptflow
@pytest.mark.parametrize("env, account", [("strict", "LLM gateway gave up after 2 attempt(s)"),
                                          ("nogateway", "gave up after 2 attempt(s)")])
def test_429_with_retry_after_stops_at_max_attempts_in_prompty_flows(repo, state_dir, env, account):
    """A .prompty call retries through promptflow-core (10 tries, its own back-off): bounded too."""
    with SimulatorServer(rules_path=repo / "configs/qa/simulator.yaml") as qa_sim:
        qa_sim.faults.add(kind="429", count=None, retry_after=0.05)
        result = experiment(repo, qa_sim, use_case="qa", env=env, force=True)
        assert result.runs[0].lines_failed == 8
        assert account in result.runs[0].errors[0]["message"]
        assert qa_sim.stats.snapshot()["by_status"].get("429") == 8 * 2


@pytest.mark.promptflow
def test_retries_stop_at_max_total_sec(repo, state_dir, sim):
    sim.faults.add(kind="429", count=None, retry_after=0.3)
    started = time.monotonic()
    result = experiment(repo, sim, env="patient", variants="defaults", datasets=["tickets_mini"],
                        force=True)
    assert result.runs[0].lines_failed == 4
    assert "max_total_sec 1" in result.runs[0].errors[0]["message"]
    assert sim.stats.snapshot()["by_status"].get("429") <= 4 * 4  # 1 s of 0.3 s waits a line
    assert time.monotonic() - started < 60


@pytest.mark.promptflow
def test_persistent_500_fails_with_message(repo, state_dir, sim, capsys):
    sim.faults.add(kind="500", count=None)
    result = experiment(repo, sim, variants="defaults", datasets=["tickets_mini"], force=True)
    assert not result.ok
    assert result.runs[0].lines_failed == 4
    with pytest.raises(RunFailed) as info:
        result.raise_if_failed()
    message = str(info.value)
    assert "4 failed line(s)" in message and "LLM gateway gave up after 2 attempt(s)" in message
    assert "500" in message
    # runtime.retries.max_attempts is 2: the gateway's attempts are all there are (no SDK retries
    # on top), 2 per line for the first node, which then fails the line
    assert sim.stats.requests == 4 * 2


@pytest.mark.promptflow
def test_429_storm_loses_and_duplicates_no_line(repo, state_dir, sim, capsys, monkeypatch):
    monkeypatch.setenv("LLM_API_BASE", sim.openai_base_url)  # the config's connection: this simulator
    sim.faults.add(kind="429", rate=0.5, retry_after=0.05)  # every other request, forever
    code = main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
                 "--datasets", "tickets_pr", "--variants", "all", "--json", "--force"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0, payload.get("failures")
    assert payload["totals"]["lines_ok"] == 3 * 10 and payload["totals"]["lines_failed"] == 0
    ledger = Workspace.for_repo(repo).ledger()
    for run in payload["runs"]:
        rows = ledger.read_outputs(run["key"])
        assert [row["line"] for row in rows] == list(range(10))  # each line once, none lost
        texts = [json.loads(line)["text"] for line in
                 (repo / "datasets/classification/tickets_pr.jsonl").read_text().splitlines()]
        assert [row["inputs"]["text"] for row in rows] == texts  # in its own place
    stats = sim.stats.snapshot()
    assert stats["by_status"]["200"] == 3 * 10 * 2  # every LLM call answered exactly once
    assert stats["by_status"]["429"] >= stats["by_status"]["200"] - 1
    assert payload["gateway"]["outcomes"]["throttled"] == stats["by_status"]["429"]


@pytest.mark.promptflow
def test_a_quota_limited_deployment_runs_without_failed_lines(repo, state_dir):
    """600 RPM = 10 requests/s, over 1 s windows, not configured: the gateway learns it."""
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml",
                         quota={"rpm": 600}) as limited:
        result = experiment(repo, limited, variants="all", datasets=["tickets_pr"], force=True)
    assert result.ok and result.totals.lines_failed == 0
    stats = limited.stats.snapshot()
    assert stats["by_status"]["200"] == 60
    assert stats["throttled"] <= 10  # the first second, before the quota is known
    upstream = next(iter(result.gateway["upstreams"].values()))
    assert upstream["quota"]["source"] == "learned" and 600 <= upstream["quota"]["rpm"] <= 640


@pytest.mark.promptflow
def test_a_rerun_retries_only_the_failed_lines_and_keeps_the_good_ones(repo, state_dir, sim):
    sim.faults.add(kind="500", count=None, match="invoices for 2024")  # line 1 fails, persistently
    first = experiment(repo, sim, variants="classify.careful,classify.terse", datasets=["tickets_mini"])
    assert not first.ok
    assert [(r.lines_ok, r.lines_failed) for r in first.runs] == [(3, 1), (3, 1)]
    ledger = Workspace.for_repo(repo).ledger()
    before = {r.key: ledger.read_outputs(r.key) for r in first.runs}

    sim.faults.clear()
    calls = sim.stats.requests
    second = experiment(repo, sim, variants="classify.careful,classify.terse", datasets=["tickets_mini"])
    assert second.ok, second.failures
    # line 1 only: 2 variants x 2 LLM nodes, after one probe of the model behind gpt-4o-mini
    assert sim.stats.requests == calls + 2 * 2 + 1
    for run in second.runs:
        assert (run.lines_ok, run.lines_failed, run.retried_lines) == (4, 0, 1)
        assert not run.reused and run.key in before
        after = ledger.read_outputs(run.key)
        assert [row["line"] for row in after] == [0, 1, 2, 3]
        kept = [row for row in after if row["line"] != 1]
        assert kept == [row for row in before[run.key] if row["line"] != 1]  # untouched
        assert after[1]["ok"] and after[1]["inputs"]["id"] == "PR002"
    third = experiment(repo, sim, variants="classify.careful,classify.terse", datasets=["tickets_mini"])
    assert all(r.reused for r in third.runs) and sim.stats.requests == calls + 5 + 1  # a probe


def test_a_run_whose_every_line_failed_is_not_reused(tone, state_dir, tone_sim):
    sim = tone_sim
    sim.faults.add(kind="500", count=None)
    assert experiment(tone, sim, use_case="tone", variants="defaults", datasets=["tone_mini"]).runs[0].lines_ok == 0
    sim.faults.clear()
    again = experiment(tone, sim, use_case="tone", variants="defaults", datasets=["tone_mini"])
    assert again.ok and again.runs[0].lines_ok == 4 and again.runs[0].retried_lines == 4


def test_cli_exit_1_and_json_schema_on_failure(tone, state_dir, tone_sim, capsys, monkeypatch):
    sim = tone_sim
    monkeypatch.setenv("LLM_API_BASE", sim.openai_base_url)  # the config's connection: this simulator
    sim.faults.add(kind="500", count=None)
    code = main(["--repo", str(tone), "run", "experiment", "-u", "tone", "--env", "fast",
                 "--datasets", "tone_mini", "--json", "--force"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["ok"] is False and payload["phase"] == "experiment"
    assert set(payload["totals"]) >= {"runs", "reused", "lines_ok", "lines_failed", "total_tokens", "cost"}
    run = payload["runs"][0]
    for key in ("key", "variant", "dataset", "dataset_hash", "flow_hash", "engine_run", "status", "lines_ok",
                "lines_failed", "prompt_tokens", "completion_tokens", "latency_p95_s", "reused", "errors"):
        assert key in run
    assert payload["failures"][0]["errors"][0]["message"]


@pytest.mark.promptflow
def test_no_secret_in_ledger_or_output(repo, state_dir, sim, tmp_path, monkeypatch, capsys):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"LLM_API_KEY={CANARY}\n")
    monkeypatch.setenv("GENAIOPS_DOTENV", str(dotenv))
    monkeypatch.setenv("LLM_API_BASE", sim.openai_base_url)  # the config's connection: this simulator
    code = main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
                 "--datasets", "tickets_mini", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert CANARY not in captured.out + captured.err
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_unknown_dataset_is_usage_error(repo, state_dir, capsys):
    code = main(["--repo", str(repo), "run", "experiment", "-u", "classification", "--env", "fast",
                 "--datasets", "nope"])
    assert code == 2
    assert "unknown dataset(s): nope" in capsys.readouterr().err


@pytest.mark.promptflow
def test_resume_after_killed_process(repo, state_dir, tmp_path):
    """Kill the orchestrator mid-experiment: finished runs stay, the rest re-run on the next call."""
    env = {**os.environ, "GENAIOPS_STATE_DIR": str(state_dir), "GENAIOPS_SIMULATOR_LATENCY_MS": "150"}
    command = [sys.executable, "-m", "genaiops", "--repo", str(repo), "run", "experiment",
               "-u", "classification", "--env", "fast", "--datasets", "tickets_mini,tickets_pr",
               "--max-parallel", "1", "--no-progress", "--json"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    runs_dir = state_dir / "ledger" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs_dir.glob("*.json")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the first dataset's run is recorded, the second is not
    process.wait()
    recorded = {p.stem for p in runs_dir.glob("*.json")}
    assert len(recorded) == 1

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    reused = {r["key"] for r in result["runs"] if r["reused"]}
    assert reused == recorded
    assert {r["dataset"] for r in result["runs"] if not r["reused"]} == {"tickets_pr"}


@pytest.mark.promptflow
def test_budget_refuses_when_the_estimate_exceeds_it(repo, state_dir, sim):
    experiment(repo, sim, variants="defaults", datasets=["tickets_mini"])  # history to estimate from
    calls = sim.stats.requests
    with pytest.raises(UsageError, match=r"estimated cost .* exceeds --budget 1e-06"):
        experiment(repo, sim, variants="grid", datasets=["tickets_mini"], budget=0.000001)
    assert sim.stats.requests == calls  # refused before any LLM call
    assert experiment(repo, sim, variants="classify.terse", datasets=["tickets_mini"], budget=10.0).ok
