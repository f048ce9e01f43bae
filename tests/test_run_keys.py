"""Run keys cover everything that can change a run's outputs, and a run whose inputs genaiops
cannot know is not reused: a prompty flow that finds its endpoint in the environment, the
simulator's rules changed between runs, variables read in ways no name can be given for."""

from __future__ import annotations

import json
import re
import socket
import textwrap
from pathlib import Path

import pytest
from repo_factory import write

from genaiops.cli import main
from genaiops.engines.envscan import OPENAI_SDK_VARIABLES, python_reads
from genaiops.engines.promptflow import PromptflowEngine
from genaiops.engines.promptflow.flowspec import read_flow
from genaiops.simulator import SimulatorServer
from genaiops.simulator.rules import load_rules

PROMPTY = """\
---
name: classify
model:
  api: chat
  configuration:
    type: openai
    base_url: ${env:OPENAI_BASE_URL}
    api_key: ${env:OPENAI_API_KEY}
    model: gpt-4o-mini
  parameters: {temperature: 0, max_tokens: 20}
inputs:
  text: {type: string}
---
system:
Classify the support ticket.

user:
ticket: {{text}}
"""

RULES = """\
rules:
  - name: answer
    when: {prompt: "(?is)ticket:"}
    reply: "%s"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_env_repo(root: Path, port: int, extra: str = "") -> Path:
    """A prompty flow that reaches its endpoint through OPENAI_BASE_URL (no genaiops connection)."""
    write(root / "flows/envflow/classify.prompty", PROMPTY)
    write(root / "datasets/envflow/rows.jsonl", '{"text": "refund"}\n{"text": "login"}\n')
    write(root / "configs/envflow/simulator.yaml", RULES % "rules-v1")
    write(root / "configs/envflow/experiment.yaml", textwrap.dedent(f"""\
        name: envflow
        flow: flows/envflow/classify.prompty
        simulator: {{rules: configs/envflow/simulator.yaml, port: {port}}}
        datasets:
          - name: rows
            source: datasets/envflow/rows.jsonl
            mappings: {{text: "${{data.text}}"}}
        runtime: {{worker_count: 2, retries: {{max_attempts: 2, backoff_sec: 0.1}}}}
        """) + extra)
    return root


def experiment(repo: Path, capsys) -> tuple[dict, str]:
    code = main(["--repo", str(repo), "run", "experiment", "-u", "envflow", "--json", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def answers(state_dir: Path, result: dict) -> list[str]:
    path = state_dir / "ledger" / "runs" / f"{result['runs'][0]['key']}.outputs.jsonl"
    return [json.loads(line)["outputs"]["output"] for line in path.read_text().splitlines()]


@pytest.mark.promptflow
def test_changed_simulator_rules_change_the_key_of_an_environment_endpoint_flow(
        tmp_path, state_dir, monkeypatch, capsys):
    """The simulator at the config's port (what `genaiops simulator -u envflow` serves) is an
    endpoint genaiops knows: runs are reused, until its rules change."""
    port = free_port()
    repo = make_env_repo(tmp_path / "repo", port)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "simulator-key")
    rules = repo / "configs/envflow/simulator.yaml"
    with SimulatorServer(rules_path=rules, port=port) as sim:
        first, _ = experiment(repo, capsys)
        assert answers(state_dir, first) == ["rules-v1", "rules-v1"]
        second, _ = experiment(repo, capsys)
        assert second["runs"][0]["reused"] and second["runs"][0]["key"] == first["runs"][0]["key"]
        calls = sim.stats.requests
        rules.write_text(RULES % "rules-v2")
        sim.rules = load_rules(rules)  # the simulator now answers by the new rules
        third, _ = experiment(repo, capsys)
        assert not third["runs"][0]["reused"] and third["runs"][0]["key"] != first["runs"][0]["key"]
        assert answers(state_dir, third) == ["rules-v2", "rules-v2"]
        assert sim.stats.requests == calls + 2


@pytest.mark.promptflow
def test_an_endpoint_genaiops_does_not_manage_is_not_reused_until_declared(
        tmp_path, state_dir, monkeypatch, capsys):
    port = free_port()
    repo = make_env_repo(tmp_path / "repo", port)
    monkeypatch.setenv("OPENAI_API_KEY", "simulator-key")
    rules = repo / "configs/envflow/simulator.yaml"
    with SimulatorServer(rules_path=rules) as other:  # some endpoint: not the config's simulator
        monkeypatch.setenv("OPENAI_BASE_URL", other.openai_base_url)
        first, _ = experiment(repo, capsys)
        second, err = experiment(repo, capsys)
        assert not second["runs"][0]["reused"] and other.stats.requests == 4
        assert "classify.prompty:7: reads OPENAI_BASE_URL, an endpoint genaiops does not manage" in err
        assert "environment_variables" in err and "not reused" in err
        assert second["notes"] and "OPENAI_BASE_URL" in second["notes"][0]

        config = repo / "configs/envflow/experiment.yaml"
        config.write_text(config.read_text() + "environment_variables:\n"
                          "  OPENAI_BASE_URL: ${env:OPENAI_BASE_URL}\n"
                          "  OPENAI_API_KEY: ${env:OPENAI_API_KEY}\n")
        declared, err = experiment(repo, capsys)
        assert declared["runs"][0]["reused"] and "not reused" not in err and not declared["notes"]
    with SimulatorServer(rules_path=rules) as moved:  # the endpoint changes: so does the key
        rules.write_text(RULES % "moved")
        moved.rules = load_rules(rules)
        monkeypatch.setenv("OPENAI_BASE_URL", moved.openai_base_url)
        switched, _ = experiment(repo, capsys)
        assert not switched["runs"][0]["reused"]
        assert answers(state_dir, switched) == ["moved", "moved"]


# -- the scan (no promptflow run) ------------------------------------------------------------------

FLEX_CODE = """\
import os
from os import environ, getenv as env_get

import openai

MODEL = os.environ["LLM_MODEL"]
TEMPERATURE = os.environ.get("LLM_TEMPERATURE", "0")
STYLE = env_get("LLM_STYLE")
if "LLM_DEBUG" in os.environ:
    pass
NAME = "LLM_" + "X"
SECRET = environ.get(NAME)
EVERYTHING = dict(os.environ)
os.environ.update({"LLM_SET_BY_THE_FLOW": "1"})
from dotenv import load_dotenv
load_dotenv()
"""


def test_the_scan_finds_literal_reads_and_locates_the_unknowable(tmp_path):
    reads = python_reads(FLEX_CODE, "flow/app.py")
    assert {"LLM_MODEL", "LLM_TEMPERATURE", "LLM_STYLE", "LLM_DEBUG"} <= set(reads.variables)
    assert set(OPENAI_SDK_VARIABLES) <= set(reads.variables)  # `import openai` reads them itself
    assert reads.variables["LLM_MODEL"] == "flow/app.py:6"
    assert reads.unknown == ["flow/app.py:12: reads an environment variable whose name is computed",
                             "flow/app.py:13: uses the whole environment (os.environ)",
                             "flow/app.py:16: loads a .env file (load_dotenv), whose variables "
                             "genaiops cannot see"]
    assert python_reads("x = 1\n", "a.py").variables == {} and python_reads("x = (", "a.py").unknown


def test_the_promptflow_engine_reads_env_refs_and_connections_of_a_flow(tmp_path, repo_root):
    write(tmp_path / "envflow/classify.prompty", PROMPTY)
    engine = PromptflowEngine()
    reads = engine.flow_reads(read_flow(tmp_path / "envflow/classify.prompty"))
    assert reads.variables == {"OPENAI_BASE_URL": "envflow/classify.prompty:7",
                               "OPENAI_API_KEY": "envflow/classify.prompty:8"}
    dag = engine.flow_reads(read_flow(repo_root / "flows/classification/standard"))
    assert dag.variables == {} and set(dag.connections) == {"llm"} and dag.unknown == []


ECHO_ENV = """\
import os
from dataclasses import dataclass


@dataclass
class Seen:
    greeting: str
    endpoint: str


def echo(text: str) -> Seen:
    return Seen(greeting=os.environ.get("GREETING", "unset") + " " + text,
                endpoint=os.environ.get("LLM_ENDPOINT", "unset"))
"""


@pytest.mark.promptflow
def test_environment_variables_reach_the_run_and_resolve_connection_references(
        tmp_path, state_dir, monkeypatch, capsys):
    """The reference template hands runs `environment_variables`; a `${<connection>.<key>}` value
    is resolved by promptflow inside the run, so no secret passes through genaiops."""
    monkeypatch.delenv("GREETING", raising=False)
    repo = tmp_path / "repo"
    write(repo / "flows/envflow/echo/echo.py", ECHO_ENV)
    write(repo / "flows/envflow/echo/flow.flex.yaml", "entry: echo:echo\n")
    write(repo / "datasets/envflow/rows.jsonl", '{"text": "world"}\n')
    write(repo / "configs/envflow/experiment.yaml", textwrap.dedent("""\
        name: envflow
        flow: flows/envflow/echo
        connections:
          - {name: llm, type: open_ai, api_base: "https://llm.example.com/v1", api_key: sk-test-1}
        datasets:
          - name: rows
            source: datasets/envflow/rows.jsonl
            mappings: {text: "${data.text}"}
        environment_variables:
          GREETING: hello
          LLM_ENDPOINT: ${llm.base_url}
        runtime: {worker_count: 1}
        """))
    assert main(["--repo", str(repo), "run", "init", "-u", "envflow"]) == 0
    capsys.readouterr()
    result, err = experiment(repo, capsys)
    assert "not reused" not in err  # GREETING and LLM_ENDPOINT are declared: the run is known
    [row] = [json.loads(line) for line in (state_dir / "ledger" / "runs" /
             f"{result['runs'][0]['key']}.outputs.jsonl").read_text().splitlines()]
    # the connection as the run has it: behind the command's LLM gateway, which forwards its calls
    # to https://llm.example.com/v1 under the quota
    assert row["outputs"]["greeting"] == "hello world"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/pools/flow/llm", row["outputs"]["endpoint"])
    assert experiment(repo, capsys)[0]["runs"][0]["reused"]
