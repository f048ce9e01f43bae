"""Flow code cannot carry the trust root (or a connection key) into what genaiops stores (issue 19,
item 6): engine processes get an allow-listed environment without the audit key, and every output
a flow or evaluator returns is redacted against every secret in play before it is written.

A promptflow DAG and an Agent Framework app that try every way to leak: the audit key's variable,
the audit key file read by path, the connection key fetched from promptflow's store and the key's
own variable. Real `genaiops run verdict` processes against the simulator; afterwards every file
genaiops, promptflow and the engines wrote (state folder, reports, HOME, promptflow's private home
with its run folders, temp files, flow caches) is searched for each canary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from repo_factory import write

import genaiops
from genaiops.engines.processenv import sandbox_base

pytestmark = pytest.mark.promptflow

SRC = Path(genaiops.__file__).resolve().parents[1]
AUDIT_ENV_CANARY = "canary-audit-env-7f3a9c21d4e8b6a05f1c3e7d9b2a4c6e"
AUDIT_FILE_CANARY = "canary-audit-file-0b4d8e2f6a1c3e5d7f9b1a3c5e7d9f0b"
CONNECTION_CANARY = "canary-conn-key-5e9d1b3f7a2c4e6d"

LEAK_PY = """\
import os
from pathlib import Path

from promptflow.core import tool


@tool
def leak(key_file: str) -> str:
    found = [os.environ.get("GENAIOPS_AUDIT_KEY", "no-env-key")]
    try:
        found.append(Path(key_file).read_text().strip())
    except OSError as exc:
        found.append(f"file unreadable: {type(exc).__name__}")
    try:
        from promptflow.client import PFClient

        found.append(PFClient().connections.get("llm", with_secrets=True).api_key)
    except Exception as exc:
        found.append(f"no connection: {type(exc).__name__}")
    found.append(os.environ.get("LLM_API_KEY", "no-llm-key"))
    return " | ".join(found)
"""

LEAK_DAG = """\
inputs:
  key_file: {type: string}
outputs:
  answer: {type: string, reference: "${leak.output}"}
nodes:
  - name: leak
    type: python
    source: {type: code, path: leak.py}
    inputs: {key_file: "${inputs.key_file}"}
"""

LEAK_APP = """\
import os
from pathlib import Path

INPUTS = ("key_file",)
OUTPUTS = ("answer",)


class Answer:
    def __init__(self, text):
        self.text = text


class Leaker:
    async def run(self, key_file, **kwargs):
        found = [os.environ.get("GENAIOPS_AUDIT_KEY", "no-env-key")]
        try:
            found.append(Path(key_file).read_text().strip())
        except OSError as exc:
            found.append(f"file unreadable: {type(exc).__name__}")
        found.append(os.environ.get("LLM_API_KEY", "no-llm-key"))
        return Answer(" | ".join(found))


def build(llm):
    return Leaker()
"""

# the evaluator leaks too: its outputs go to the evaluation store and the reports
EVAL_PY = """\
import os
from pathlib import Path

from promptflow.core import tool


@tool
def grade(prediction: str, key_file: str) -> dict:
    leaked = os.environ.get("GENAIOPS_AUDIT_KEY", "no-env-key")
    try:
        leaked += " " + Path(key_file).read_text()
    except OSError as exc:
        leaked += f" file unreadable: {type(exc).__name__}"
    return {"score": 1.0, "leaked": leaked + " " + prediction}
"""

EVAL_DAG = """\
inputs:
  prediction: {type: string}
  key_file: {type: string}
outputs:
  score: {type: double, reference: "${grade.output.score}"}
  leaked: {type: string, reference: "${grade.output.leaked}"}
nodes:
  - name: grade
    type: python
    source: {type: code, path: grade.py}
    inputs: {prediction: "${inputs.prediction}", key_file: "${inputs.key_file}"}
"""

CONFIG = """\
name: {name}
engine: {engine}
flow: {flow}
connections:
  - name: llm
    type: open_ai
    api_base: simulator
    api_key: ${{env:LLM_API_KEY}}
simulator:
  rules: configs/{name}/simulator.yaml
datasets:
  - name: rows
    source: datasets/leak/rows.jsonl
    mappings:
      key_file: ${{data.key_file}}
evaluators:
  - name: judge
    flow: flows/leak/evaluation
    datasets:
      - name: rows_eval
        reference: rows
        mappings:
          prediction: ${{run.outputs.answer}}
          key_file: ${{data.key_file}}
evaluation: {{primary_metric: score}}
gates:
  - {{metric: score, op: ">=", threshold: 1.0}}
"""


@pytest.fixture
def world(tmp_path):
    repo, home, tmp, trust = (tmp_path / n for n in ("repo", "home", "tmp", "trust"))
    for folder in (home, tmp, trust):
        folder.mkdir(mode=0o700)
    key_file = trust / "audit.key"
    key_file.write_text(AUDIT_FILE_CANARY + "\n")
    key_file.chmod(0o600)
    write(repo / "flows/leak/standard/flow.dag.yaml", LEAK_DAG)
    write(repo / "flows/leak/standard/leak.py", LEAK_PY)
    write(repo / "flows/leak/maf/app.py", LEAK_APP)
    write(repo / "flows/leak/evaluation/flow.dag.yaml", EVAL_DAG)
    write(repo / "flows/leak/evaluation/grade.py", EVAL_PY)
    rows = [{"key_file": str(key_file), "n": i} for i in range(3)]
    write(repo / "datasets/leak/rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for name, engine, flow in (("leak_pf", "promptflow", "flows/leak/standard"),
                               ("leak_af", "agent_framework", "flows/leak/maf/app.py:build")):
        write(repo / f"configs/{name}/experiment.yaml", CONFIG.format(name=name, engine=engine, flow=flow))
        write(repo / f"configs/{name}/simulator.yaml", "default_reply: hello\n")
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(SRC),
           "GENAIOPS_TRUST_DIR": str(trust), "GENAIOPS_AUDIT_KEY": AUDIT_ENV_CANARY,
           "LLM_API_KEY": CONNECTION_CANARY, "GENAIOPS_KEEP_ENGINE_HOME": "1"}
    for name in ("GENAIOPS_ENGINE_HOME", "GENAIOPS_STATE_DIR", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    return {"root": tmp_path, "repo": repo, "env": env, "trust": trust}


def _files_holding(world, canaries) -> list[str]:
    """Every file under the test's folders (repo + state, HOME, temp files and private homes)
    but the trust folder that holds a canary, raw or JSON-escaped."""
    found = []
    for path in world["root"].rglob("*"):
        if not path.is_file() or path.is_symlink() or world["trust"] in path.parents:
            continue
        data = path.read_bytes()
        for canary in canaries:
            if canary.encode() in data:
                found.append(f"{path.relative_to(world['root'])}: {canary[:18]}")
    return found


@pytest.mark.parametrize("use_case", ["leak_pf", "leak_af"])
def test_a_flow_that_returns_the_audit_key_or_a_connection_key_stores_nothing_of_them(world, use_case):
    done = subprocess.run([sys.executable, "-m", "genaiops", "--repo", str(world["repo"]), "run",
                           "verdict", "-u", use_case, "--no-progress", "--json"],
                          env=world["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    [run] = payload["experiment"]["runs"]
    ledger = world["repo"] / ".genaiops/ledger/runs" / f"{run['key']}.outputs.jsonl"
    answers = {json.loads(line)["outputs"]["answer"] for line in ledger.read_text().splitlines()}
    # the audit key's variable never reached the flow; what it read otherwise was masked
    parts = next(iter(answers)).split(" | ")
    assert parts[0] == "no-env-key"
    if sandbox_base():  # the trust folder is an empty folder to the flow
        assert parts[1] == "file unreadable: FileNotFoundError"
    else:  # same user, no sandbox: the file is read, its value masked (docs/trust.md)
        assert parts[1] == "***"
    assert set(parts[2:]) == {"***"}  # the connection key, from the store and from its variable
    homes = list((world["root"] / "tmp").glob("genaiops-home-*"))
    assert homes and any(homes[0].rglob("flow_outputs"))  # run folders kept to be searched
    assert (world["repo"] / ".genaiops/reports").is_dir()
    canaries = [AUDIT_ENV_CANARY, AUDIT_FILE_CANARY, CONNECTION_CANARY]
    assert _files_holding(world, canaries) == []
    assert not any(c in done.stdout + done.stderr for c in canaries)


def test_engine_processes_get_the_allow_list_and_never_the_audit_key():
    from genaiops.engines.processenv import engine_environment, passed_values

    environ = {"PATH": "/bin", "LC_ALL": "C", "PF_WORKER_COUNT": "2", "GENAIOPS_WORKER_IDLE_SEC": "5",
               "GENAIOPS_AUDIT_KEY": AUDIT_ENV_CANARY, "GENAIOPS_TRUST_DIR": "/trust",
               "GENAIOPS_SERVICE_TOKEN": "t0ken-value", "AWS_SECRET_ACCESS_KEY": "aws-secret",
               "LLM_API_KEY": CONNECTION_CANARY, "HOME": "/home/user", "HTTPS_PROXY": "http://proxy:3128"}
    env = engine_environment({"GENAIOPS_AUDIT_KEY": "again", "PF_LINE_TIMEOUT_SEC": "9"}, environ)
    assert env == {"PATH": "/bin", "LC_ALL": "C", "PF_WORKER_COUNT": "2", "GENAIOPS_WORKER_IDLE_SEC": "5",
                   "HTTPS_PROXY": "http://proxy:3128", "PF_LINE_TIMEOUT_SEC": "9"}
    # what a flow names by literal is passed, except what is withheld whatever it names
    assert passed_values(["LLM_API_KEY", "GENAIOPS_AUDIT_KEY", "UNSET"], environ) == \
        {"LLM_API_KEY": CONNECTION_CANARY}
