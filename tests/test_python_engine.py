"""The python engine (a flow is `file.py:function`) on the CLI: scaffold, validate, experiment,
evaluate and compare against the bundled LLM simulator through the gateway; lines that fail, time
out or kill their worker; the serving bundle answering /score; and a fourth engine added from a
fixture folder with one `GENAIOPS_ENGINES` line (no source file touched)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from genaiops.cli import main
from genaiops.engines import VariantSpec, open_engine

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "engines"


def run_cli(repo: Path, *args: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--repo", str(repo), *args])
    text = out.getvalue()
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    return code, data, err.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, state) -> Path:
    """A repository with a scaffolded python use case `tone`."""
    root = tmp_path_factory.mktemp("pyrepo")
    for top in ("flows", "configs", "datasets"):
        (root / top).mkdir()
    for var in ("LLM_API_TYPE", "LLM_API_BASE", "LLM_API_KEY", "LLM_API_VERSION"):
        os.environ.pop(var, None)
    code, data, err = run_cli(root, "new", "tone", "--kind", "python", "--json")
    assert code == 0, err
    assert "flows/tone/standard/flow.py" in data["created"] and data["kind"] == "python"
    return root


def test_new_python_use_case_validates(repo):
    code, data, err = run_cli(repo, "validate", "--json")
    assert code == 0, err
    assert data["ok"] is True


def test_python_experiment_and_evaluate_through_the_gateway(repo):
    code, experiment, err = run_cli(repo, "run", "experiment", "--use-case", "tone",
                                    "--variants", "all", "--json", "--no-progress")
    assert code == 0, err
    assert experiment["totals"]["lines_ok"] == 18 and experiment["totals"]["lines_failed"] == 0
    assert experiment["totals"]["total_tokens"] > 0  # usage counted by genaiops_pyflow's client
    assert experiment["gateway"]["outcomes"] == {"answered": 18}  # every call through the gateway
    outputs = {r["variant"]: r for r in experiment["runs"]}
    assert set(outputs) == {"precise", "creative"}
    # the typed result (ExperimentRun, ExperimentTotals) prints the fields it always printed
    assert set(experiment["runs"][0]) == {
        "key", "use_case", "env", "experiment_id", "flow", "flow_kind", "flow_hash", "variant",
        "variant_spec", "dataset", "dataset_source", "dataset_hash", "column_mapping", "settings",
        "engine_run", "engine_output", "status", "lines_total", "lines_ok", "lines_failed",
        "duration_s", "prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_p50_s",
        "latency_p95_s", "latency_p99_s", "errors", "started_at", "finished_at", "outputs_sha256",
        "merged_runs", "served", "repeats", "reused", "retried_lines"}
    assert set(experiment["totals"]) == {"runs", "reused", "lines_ok", "lines_failed", "total_tokens",
                                         "cost", "estimated_cost", "duration_s"}
    code, summary, err = run_cli(repo, "run", "evaluate", "--use-case", "tone", "--json",
                                 "--no-progress")
    assert code == 0, (err, summary)
    [gate] = summary["gates"]
    assert gate["status"] == "pass" and gate["variant"] == "precise" and gate["value"] >= 0.8


def _use_case(repo: Path, name: str, flow_text: str, timeout: int = 60) -> None:
    """A python use case whose flow is `flow_text` (no LLM), on tone's dataset."""
    (repo / f"flows/{name}").mkdir(parents=True)
    (repo / f"flows/{name}/flow.py").write_text(flow_text)
    config = yaml.safe_load((repo / "configs/tone/experiment.yaml").read_text())
    config.update(name=name, flow=f"flows/{name}/flow.py:label", evaluators=[], gates=[],
                  variants=[])
    config["runtime"].update(line_timeout_sec=timeout, worker_count=2, retries={"max_attempts": 1})
    (repo / f"configs/{name}").mkdir()
    (repo / f"configs/{name}/experiment.yaml").write_text(yaml.safe_dump(config))


def test_failed_and_timed_out_lines_are_recorded_per_line(repo):
    _use_case(repo, "slow", (
        "import time\n\n"
        "def label(text):\n"
        "    if 'kettle' in text:\n        time.sleep(60)\n"
        "    if 'handle' in text:\n        raise ValueError('no handle allowed')\n"
        "    return {'sentiment': 'neutral'}\n"), timeout=2)
    started = time.monotonic()
    code, experiment, err = run_cli(repo, "run", "experiment", "--use-case", "slow", "--json",
                                    "--no-progress")
    assert time.monotonic() - started < 45  # the sleeping line was stopped at its timeout
    assert code == 1
    [run] = experiment["runs"]
    assert run["lines_ok"] == 7 and run["lines_failed"] == 2
    errors = " ".join(str(e) for e in run["errors"])
    assert "line timed out after 2s" in errors and "ValueError: no handle allowed" in errors


def test_a_line_worker_that_dies_fails_the_run(repo):
    _use_case(repo, "dies", "import os\n\ndef label(text):\n"
                            "    if 'handle' in text:\n        os._exit(9)\n"
                            "    return {'sentiment': 'neutral'}\n")
    code, _data, err = run_cli(repo, "run", "experiment", "--use-case", "dies", "--no-progress")
    assert code == 1
    assert "line worker died" in err and "exit code 9" in err and "Traceback" not in err


def test_an_async_flow_runs(repo):
    _use_case(repo, "asyncflow", "import asyncio\n\nasync def label(text):\n"
                                 "    await asyncio.sleep(0)\n"
                                 "    return {'sentiment': text.split()[0].lower()}\n")
    code, experiment, err = run_cli(repo, "run", "experiment", "--use-case", "asyncflow",
                                    "--json", "--no-progress")
    assert code == 0, err
    assert experiment["totals"]["lines_ok"] == 9


def test_the_serving_bundle_answers_score_and_health(repo, tmp_path):
    from genaiops.simulator import SimulatorServer

    engine = open_engine("python")
    flow = engine.read_flow(repo / "flows/tone/standard/flow.py:classify")
    staged = engine.stage_for_serving(flow, VariantSpec("precise", init={"temperature": 0.0}),
                                      tmp_path / "staged")
    with SimulatorServer(rules_path=repo / "configs/tone/simulator.yaml") as sim:
        described = [{"name": "llm", "type": "open_ai", "endpoint": sim.openai_base_url,
                      "api_version": None}]
        bundle = engine.serving_bundle(staged, tmp_path / "bundle", described)
        assert bundle.command == ["python", "-m", "genaiops_pyflow.serve"]
        assert "openai>=1.40,<3" in bundle.requirements
        assert "LLM_API_KEY" not in bundle.env  # secrets come at container start
        env = {**os.environ, **bundle.env, "PYTHONPATH": str(tmp_path / "bundle/app"),
               "GENAIOPS_FLOW_DIR": str(tmp_path / "bundle/app/flow"), "PORT": "18931",
               "HOST": "127.0.0.1", "LLM_API_KEY": "sim-key"}
        server = subprocess.Popen([sys.executable, "-m", "genaiops_pyflow.serve"], env=env)
        try:
            for _ in range(100):
                try:
                    with urllib.request.urlopen("http://127.0.0.1:18931/health", timeout=2) as r:
                        assert json.loads(r.read()) == {"status": "healthy"}
                        break
                except OSError:
                    time.sleep(0.2)
            request = urllib.request.Request(
                "http://127.0.0.1:18931/score", method="POST",
                data=json.dumps({"text": "I love it, great kettle"}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert json.loads(response.read()) == {"sentiment": "positive"}
        finally:
            server.terminate()
            server.wait(10)


def test_a_fourth_engine_from_a_fixture_folder(repo, monkeypatch):
    """One registry line (GENAIOPS_ENGINES) and a module on the path: validate, experiment,
    evaluate (scored by the python evaluation flow) and compare against the python engine."""
    monkeypatch.setenv("GENAIOPS_ENGINES", "toy=toy_engine:ToyEngine")
    monkeypatch.syspath_prepend(str(FIXTURES))
    shutil.copytree(FIXTURES / "toy_flow", repo / "flows/toy/standard")
    config = yaml.safe_load((repo / "configs/tone/experiment.yaml").read_text())
    config.update(name="toy", engine="toy", flow="flows/toy/standard",
                  variants=[{"name": "plain", "init": {}}])
    (repo / "configs/toy").mkdir()
    (repo / "configs/toy/experiment.yaml").write_text(yaml.safe_dump(config))

    code, data, err = run_cli(repo, "validate", "--use-case", "toy", "--json")
    assert code == 0, err
    code, experiment, err = run_cli(repo, "run", "experiment", "--use-case", "toy", "--json",
                                    "--no-progress")
    assert code == 0, err
    assert experiment["totals"]["lines_ok"] == 9
    code, summary, err = run_cli(repo, "run", "evaluate", "--use-case", "toy", "--json",
                                 "--no-progress")
    assert code == 0, (err, summary)
    assert summary["gates"][0]["status"] == "pass"
    code, comparison, err = run_cli(repo, "compare", "--baseline", "tone", "--candidate", "toy",
                                    "--baseline-variant", "precise", "--margin", "0.3", "--json",
                                    "--no-progress")
    assert code in (0, 1), (err, comparison)
    assert [s["engine"] for s in (comparison["baseline"], comparison["candidate"])] == \
        ["python", "toy"]
    [metric] = comparison["metrics"]
    assert metric["metric"] == "accuracy" and metric["n"] == 9
    assert (code == 0) == (comparison["verdict"] == "pass")
