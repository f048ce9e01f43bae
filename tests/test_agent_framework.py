"""The agent_framework engine end to end: the Agent Framework port of the classification sample
through init, experiment and evaluate on the CLI against the LLM simulator (deploy: the docker
tests), its own Python environment, app contract checks, retries, secrets and Azure OpenAI.

These runs use the real agent-framework-core/-openai in the engine's environment
(`genaiops engine setup agent_framework`, part of `make setup`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from deploy_helpers import PORT as MAF
from deploy_helpers import REPO, copy_classification_and_port, edited, run_cli

from genaiops.cli import main
from genaiops.config import load_experiment
from genaiops.engines import open_engine
from genaiops.engines.agent_framework import environment
from genaiops.engines.base import FlowSpecError
from genaiops.errors import RunFailed
from genaiops.phases.context import PhaseContext
from genaiops.phases.experiment import ExperimentOptions, run_experiment
from genaiops.simulator import SimulatorServer
from genaiops.workspace import Workspace

pytestmark = pytest.mark.agent_framework  # real engine processes: the slow tier

CANARY = "canary-sk-af-5e81c0d94b"
# what the promptflow DAG scores on tickets.jsonl (configs/classification/simulator.yaml)
PROMPTFLOW_ACCURACY = {"summarize.full+classify.careful": 0.9565,
                       "summarize.brief+classify.careful": 0.8913,
                       "summarize.full+classify.terse": 0.7174,
                       "summarize.brief+classify.terse": 0.7174}


cli = run_cli


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_classification_and_port(tmp_path_factory.mktemp("repo"))


# -- the engine's environment -----------------------------------------------------------------

def test_the_engine_environment_is_the_dependency_group_of_pyproject():
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+, genaiops runs on 3.10
    block = re.search(r"^\[dependency-groups\].*?^agent-framework = \[(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml has no agent-framework dependency group"
    assert environment.requirement_lines() == re.findall(r'"([^"]+)"', block.group(1))


def test_the_engine_environment_is_ready_and_versions_reach_the_run_key(capsys):
    code, out, _ = cli(["engine", "list", "--json"], capsys)
    states = {s["engine"]: s for s in json.loads(out)["engines"]}
    assert code == 0 and states["agent_framework"]["ready"] is True
    assert states["agent_framework"]["versions"]["agent-framework-core"] == "1.23.0"
    assert open_engine("agent_framework").version().startswith("agent-framework-core==1.23.0;")


def test_a_missing_engine_environment_is_a_clear_error(repo, state, monkeypatch, capsys):
    monkeypatch.setenv(environment.PYTHON_ENV_VAR, str(repo / "no-such-python"))
    code, out, _ = cli(["engine", "list"], capsys)
    assert code == 1 and "genaiops engine setup agent_framework" in out
    code, _, err = cli(["--repo", str(repo), "run", "experiment", "-u", MAF], capsys)
    assert code == 1
    assert "agent_framework engine's Python environment is not ready" in err
    assert "genaiops engine setup agent_framework" in err and "Traceback" not in err


# -- reading apps -----------------------------------------------------------------------------

def test_the_port_declares_the_dags_inputs_outputs_and_variants(repo):
    spec = open_engine("agent_framework").read_flow(repo / "flows/classification/maf/app.py:build")
    dag = open_engine("promptflow").read_flow(repo / "flows/classification/standard")
    assert (spec.kind, spec.engine) == ("maf", "agent_framework")
    assert spec.inputs == dag.inputs and set(spec.outputs) == set(dag.outputs)
    assert spec.node_variants == dag.node_variants


def test_the_port_sends_the_dags_prompts_word_for_word(repo):
    """Same prompts, same requests: the simulator (or a model) answers both engines alike."""
    app = (repo / "flows/classification/maf/app.py").read_text()
    for template in ("summarize_full", "summarize_brief", "classify_careful", "classify_terse"):
        text = (repo / f"flows/classification/standard/{template}.jinja2").read_text()
        system = text.split("# system:\n", 1)[1].split("# user:", 1)[0].strip()
        for line in system.splitlines():
            assert json.dumps(line)[1:-1] in app.replace("\\'", "'"), (template, line)


@pytest.mark.parametrize("source, message", [
    ("OUTPUTS = ('answer',)\ndef build(llm): pass\n", "declare INPUTS"),
    ("INPUTS = ('q',)\nOUTPUTS = ('answer',)\n", "defines no function build"),
    ("INPUTS = ('q',)\nOUTPUTS = ('answer',)\ndef build(): pass\n", "must take the chat clients"),
    ("INPUTS = ('q',)\nOUTPUTS = ('answer',)\nVARIANTS = {'s': {'default': 'a', 'variants': "
     "{'a': {'tone': 'x'}}}}\ndef build(llm, *, style='y'): pass\n", "sets ['tone'], which build()"),
    ("INPUTS = ('q',)\nOUTPUTS = ('answer',)\nVARIANTS = {'s': {'default': 'z', 'variants': "
     "{'a': {}}}}\ndef build(llm): pass\n", "default 'z' is not one of its variants"),
    ("INPUTS = ('q',\n", "invalid Python"),
])
def test_an_app_that_breaks_the_contract_is_named_with_the_fix(tmp_path, source, message):
    (tmp_path / "app.py").write_text(source)
    with pytest.raises(FlowSpecError, match=re.escape(message)):
        open_engine("agent_framework").read_flow(tmp_path / "app.py:build")


def test_validate_locates_agent_framework_config_mistakes(repo, capsys):
    config = repo / f"configs/{MAF}/experiment.yaml"
    with edited(config, "app.py:build", "app.py:nope"), \
            edited(config, "  worker_count: 16", "  backend: azure\n  worker_count: 16"):
        code, out, _ = cli(["--repo", str(repo), "validate", "-u", MAF, "--json"], capsys)
    problems = json.loads(out)["use_cases"][0]["problems"]
    assert code == 2
    by_field = {p["field"]: p for p in problems}
    assert "defines no function nope" in by_field["flow"]["message"]
    assert by_field["flow"]["line"] and "app.py:build" in by_field["flow"]["hint"]
    assert "runs batches locally" in by_field["runtime.backend"]["message"]


def test_variants_in_config_are_refused_when_the_app_declares_its_own(repo, capsys):
    config = repo / f"configs/{MAF}/experiment.yaml"
    with edited(config, "", "variants:\n  - {name: hot, init: {classify_temperature: 0.9}}\n"):
        code, out, _ = cli(["--repo", str(repo), "validate", "-u", MAF, "--json"], capsys)
    [problem] = json.loads(out)["use_cases"][0]["problems"]
    assert code == 2 and problem["field"] == "variants"
    assert "declares its variants (summarize, classify)" in problem["message"]


# -- the four phases on the CLI ---------------------------------------------------------------

@pytest.fixture(scope="module")
def phases(repo, state):
    """init, experiment (grid), evaluate of the port, run once for the tests below."""
    import contextlib
    import io

    results = {}
    for name, argv in (("init", ["run", "init", "-u", MAF, "--json"]),
                       ("experiment", ["run", "experiment", "-u", MAF, "--variants", "grid", "--json"]),
                       ("again", ["run", "experiment", "-u", MAF, "--variants", "grid", "--json"]),
                       ("evaluate", ["run", "evaluate", "-u", MAF, "--json"])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--repo", str(repo), *argv])
        results[name] = (code, json.loads(out.getvalue()))
    return results


def test_init_keeps_the_connections_for_the_runs(phases):
    code, result = phases["init"]
    assert code == 0 and result["engine"] == "agent_framework"
    [conn] = result["connections"]
    assert conn["name"] == "llm" and conn["simulator"] is True and conn["action"] == "in memory"
    assert [d["name"] for d in result["datasets"]] == ["tickets"]


def test_experiment_runs_the_grid_in_one_worker_with_tokens_and_cost(phases):
    code, result = phases["experiment"]
    assert code == 0 and result["ok"]
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == set(PROMPTFLOW_ACCURACY)
    assert len({r["engine_run"] for r in runs.values()}) == 1  # four variants, one batch
    for run in runs.values():
        assert run["lines_ok"] == 46 and run["lines_failed"] == 0
        assert run["prompt_tokens"] > 46 * 50 and run["completion_tokens"] > 46
        assert run["cost"] > 0 and run["latency_p95_s"] is not None
    # the careful classifier's prompt is longer than the terse one's: tokens come from usage
    assert runs["summarize.full+classify.careful"]["prompt_tokens"] > \
        runs["summarize.full+classify.terse"]["prompt_tokens"]


def test_a_second_identical_experiment_reuses_every_run(phases):
    code, result = phases["again"]
    assert code == 0 and result["totals"]["reused"] == 4 == result["totals"]["runs"]
    assert result["simulator"] is None or result["simulator"]["requests"] == 0


def test_an_agent_framework_experiment_never_imports_promptflow(repo, state):
    """Only the evaluation flow is promptflow's: the experiment prepares the connections of the
    engine it runs, and promptflow costs it nothing (~3 s of imports)."""
    assert load_experiment(repo, MAF).evaluators[0].engine == "promptflow"
    script = ("import sys; from genaiops.cli import main; "
              f"code = main(['--repo', {str(repo)!r}, 'run', 'experiment', '-u', {MAF!r}, "
              "'--force', '--no-progress']); "
              "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'promptflow'}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr


def test_force_runs_again(repo, state, phases, capsys):
    code, out, _ = cli(["--repo", str(repo), "run", "experiment", "-u", MAF, "--force", "--json"],
                       capsys)
    result = json.loads(out)
    assert code == 0 and result["totals"]["reused"] == 0 and result["totals"]["runs"] == 1
    first = {r["variant"]: r for r in phases["experiment"][1]["runs"]}
    [run] = result["runs"]
    assert run["key"] == first[run["variant"]]["key"]  # same inputs, same key: re-run on demand


def test_evaluate_uses_the_promptflow_evaluator_and_scores_like_the_dag(phases):
    code, summary = phases["evaluate"]
    assert code == 0 and summary["verdict"] == "pass"
    assert summary["flow_kind"] == "maf"
    assert {e["mode"] for e in summary["evaluations"]} == {"data"}  # outputs from the ledger
    board = {row["variant"]: round(row["value"], 4) for row in summary["leaderboard"]}
    assert board == PROMPTFLOW_ACCURACY
    assert summary["best"]["variant"] == "summarize.full+classify.careful"
    assert [g["status"] for g in summary["gates"]] == ["pass", "pass", "pass", "skipped"]


# -- behaviour under faults, secrets, Azure OpenAI -----------------------------------------------

def _fast(repo: Path, use_case: str = MAF, **runtime) -> None:
    overlay = repo / f"configs/{use_case}/experiment.fast.yaml"
    rows = (repo / "datasets/classification/tickets_pr.jsonl").read_text().splitlines()[:4]
    (repo / "datasets/classification/tickets_mini.jsonl").write_text("\n".join(rows) + "\n")
    settings = {"worker_count": 4, "line_timeout_sec": 30,
                "retries": {"max_attempts": 2, "backoff_sec": 0.05}, **runtime}
    overlay.write_text(textwrap.dedent(f"""\
        datasets:
          - name: tickets_mini
            source: datasets/classification/tickets_mini.jsonl
            mappings: {{text: "${{data.text}}"}}
        evaluators: []
        runtime: {json.dumps(settings)}
        """))


def _experiment(repo, sim, **options):
    config = load_experiment(repo, MAF, "fast")
    with PhaseContext.for_config(config, simulator=sim, show_progress=False) as ctx:
        return run_experiment(ctx, ExperimentOptions(force=True, **options))


def test_429s_are_retried_with_the_runtime_policy(repo, state):
    _fast(repo, retries={"max_attempts": 4, "backoff_sec": 0.05})
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml") as sim:
        sim.faults.add(kind="429", count=3, retry_after=0.1)
        result = _experiment(repo, sim)
        assert result.ok and result.runs[0].lines_failed == 0
        assert sim.stats.snapshot()["by_status"].get("429") == 3


def test_a_persistent_500_fails_the_lines_with_the_cause(repo, state):
    _fast(repo)
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml") as sim:
        sim.faults.add(kind="500", count=None)
        result = _experiment(repo, sim)
        assert sim.stats.snapshot()["by_status"].get("500") == 4 * 2  # 4 lines x 2 attempts
    assert not result.ok and result.runs[0].lines_failed == 4
    with pytest.raises(RunFailed) as info:
        result.raise_if_failed()
    message = str(info.value)  # the LLM gateway's account: the engine itself makes one attempt
    assert "LLM gateway gave up after 2 attempt(s)" in message and "upstream answered 500" in message


def test_the_key_reaches_the_endpoint_and_nothing_else(repo, state, tmp_path, monkeypatch, capsys):
    _fast(repo)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"LLM_API_KEY={CANARY}\n")
    monkeypatch.setenv("GENAIOPS_DOTENV", str(dotenv))
    config = load_experiment(repo, MAF, "fast")
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml",
                         api_key=CANARY) as sim:  # answers only requests carrying the canary
        with PhaseContext.for_config(config, simulator=sim, show_progress=False) as ctx:
            result = run_experiment(ctx, ExperimentOptions(force=True))
    assert result.ok, result.failures
    assert CANARY not in json.dumps(result.to_json()) + "".join(capsys.readouterr())
    leaked = [str(p) for p in state.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaked == []


def test_an_azure_openai_connection_works_unchanged(repo, state, monkeypatch):
    _fast(repo)
    monkeypatch.setenv("LLM_API_TYPE", "azure_open_ai")
    requests: list[str] = []
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml", verbose=True,
                         log=requests.append) as sim:
        result = _experiment(repo, sim)
    assert result.ok, result.failures
    assert result.runs[0].lines_ok == 4
    azure = [r for r in requests if "POST /openai/deployments/gpt-4o-mini/chat/completions 200" in r]
    assert len(azure) == 8 == len(requests)  # 4 lines x (summarize + classify), Azure's wire format


def _workers_of(parent: int) -> list[int]:
    """Processes whose parent is `parent` running the engine's batch worker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"genaiops_af_runtime.batch" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_the_worker_stops_when_the_orchestrator_dies(repo, state):
    """Within about a second, long before its first line could finish (the endpoint here outlives
    the orchestrator and answers after 5 s): nothing keeps calling a paid endpoint."""
    _fast(repo)
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml",
                         latency_ms=5000) as sim:
        env = {**os.environ, "LLM_API_BASE": sim.openai_base_url}
        process = subprocess.Popen(
            [sys.executable, "-m", "genaiops", "--repo", str(repo), "run", "experiment", "-u", MAF,
             "--env", "fast", "--force", "--no-progress"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline, workers = time.monotonic() + 60, []
        while time.monotonic() < deadline and not workers:
            assert process.poll() is None, "the experiment ended before its worker was seen"
            workers = _workers_of(process.pid)
            time.sleep(0.1)
        assert workers, "no agent_framework worker started"
        os.killpg(process.pid, signal.SIGKILL)  # the worker has a session of its own: not killed here
        process.wait()
        killed = time.monotonic()
        while time.monotonic() < killed + 3 and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "the worker outlived the orchestrator"


# -- the app contract: an Agent, parameter-set variants, a failing line -----------------------

ECHO_APP = '''\
"""An Agent whose instructions are a variant parameter."""
from agent_framework import Agent

INPUTS = ("question",)
OUTPUTS = ("answer",)


def build(llm, *, mode="plain", temperature=0.0):
    if mode == "broken":
        raise RuntimeError("this variant cannot be built")
    return Agent(llm.chat_client("llm", "gpt-4o-mini"), f"Answer in mode: {mode}.",
                 default_options={"temperature": temperature})
'''

ECHO_CONFIG = """\
name: echo
engine: agent_framework
flow: flows/echo/app
connections:
  - {name: llm, type: open_ai, api_base: simulator, api_key: simulator-key}
simulator: {rules: configs/echo/simulator.yaml}
datasets:
  - name: questions
    source: datasets/echo/questions.jsonl
    mappings: {question: "${data.q}"}
evaluators:
  - name: exact
    code: flows/echo/score.py:exact
    datasets:
      - name: questions_eval
        reference: questions
        mappings: {expected: "${data.expected}", answer: "${run.outputs.answer}"}
variants:
  - {name: upper, init: {mode: upper}}
  - {name: lower, init: {mode: lower, temperature: 0.3}}
  - {name: broken, init: {mode: broken}}
runtime: {retries: {max_attempts: 1, backoff_sec: 0}}
gates:
  - {metric: exact, op: ">=", threshold: 1}
"""

ECHO_RULES = """\
rules:
  - name: upper
    when: {prompt: "(?is)mode: upper.*\\\\n(?P<q>[^\\\\n]+)$"}
    reply: "UPPER {q}"
  - name: lower
    when: {prompt: "(?is)mode: lower.*\\\\n(?P<q>[^\\\\n]+)$", temperature_min: 0.2}
    reply: "lower {q}"
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo")
    files = {"flows/echo/app/app.py": ECHO_APP,
             "flows/echo/score.py": "def exact(expected, answer):\n"
                                    "    return int(answer.startswith(expected))\n",
             "configs/echo/experiment.yaml": ECHO_CONFIG,
             "configs/echo/simulator.yaml": ECHO_RULES,
             "datasets/echo/questions.jsonl": "".join(
                 json.dumps({"q": q, "expected": e}) + "\n"
                 for q, e in (("hi", "UPPER"), ("ok", "UPPER"), ("boom", "UPPER")))}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_an_agent_app_with_parameter_set_variants(echo, state, capsys):
    code, out, _ = cli(["--repo", str(echo), "run", "experiment", "-u", "echo", "--variants",
                        "upper,lower", "--json"], capsys)
    result = json.loads(out)
    assert code == 0, out
    ledger = Workspace.for_repo(echo).ledger()
    answers = {r["variant"]: [row["outputs"]["answer"] for row in ledger.read_outputs(r["key"])]
               for r in result["runs"]}
    # `mode` reached build() (instructions), `temperature` reached the request (the rule needs >= 0.2)
    assert answers == {"upper": ["UPPER hi", "UPPER ok", "UPPER boom"],
                       "lower": ["lower hi", "lower ok", "lower boom"]}
    # each line records its dataset row, as every engine does (what an evaluator's key_column joins on)
    assert [row["inputs"] for row in ledger.read_outputs(result["runs"][0]["key"])] == [
        {"q": q, "expected": "UPPER"} for q in ("hi", "ok", "boom")]
    code, out, _ = cli(["--repo", str(echo), "run", "evaluate", "-u", "echo", "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["best"]["variant"] == "upper"


def test_a_line_that_fails_is_that_lines_error(echo, state, capsys):
    code, out, err = cli(["--repo", str(echo), "run", "experiment", "-u", "echo", "--variants",
                          "broken", "--json"], capsys)
    result = json.loads(out)
    assert code == 1 and result["runs"][0]["lines_failed"] == 3
    assert "this variant cannot be built" in result["failures"][0]["errors"][0]["message"]
    assert "Traceback" not in err
