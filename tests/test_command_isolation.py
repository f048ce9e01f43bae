"""Commands never share promptflow state: each gets a private promptflow home, so two commands
that name the same connection cannot answer each other's runs, and the user's own
`~/.promptflow` is never read or written (issue 19, item 1).

Real `genaiops run verdict` processes, real promptflow workers, LLM simulators in the test process.

How the race is made certain instead of hunted: promptflow keeps connections by name in one store
per HOME; a command writes its connection at init and each of its runs reads it when it starts.
Two commands sharing a store cross when one writes between the other's write and a later read.
Each use case here makes two runs one after the other (two datasets, `max_parallel: 1`), and each
use case's LLM endpoint holds its first request of a round until the other use case's first request
has arrived (`_Rendezvous`): by then both commands have written their connection, so each
command's second run reads the store after the other's write. With a shared store one of the two
always gets the other's endpoint (its answers, or a refused connection once the other ended):
measured with both commands given one engine home (`GENAIOPS_ENGINE_HOME`), 6 rounds of 6 crossed
(one command failed or got the other's answers), where the old test (20 free-running rounds, one
run per verdict) crossed in 4 rounds of 5. So 3 rounds prove what 20 hunted for; a round costs
about what it did (~15 s of CPU: two command processes and their promptflow workers start, the
second run is cheap), so the test takes ~3/20 of its time; GENAIOPS_TEST_ROUNDS=20 soaks. It
asserts that the rendezvous happened in every round (the two verdicts did overlap there). A store
shared with the user's HOME is caught in any round: their `~/.promptflow` must not change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from repo_factory import make_llm_use_case, write

import genaiops
from genaiops.simulator import SimulatorServer

pytestmark = pytest.mark.promptflow

SRC = Path(genaiops.__file__).resolve().parents[1]  # the sources under test
ROUNDS = int(os.environ.get("GENAIOPS_TEST_ROUNDS", "3"))  # the 20: see the module docstring
USER_BASE_URL = "http://user-own-endpoint.invalid/v1"
MEET_TIMEOUT_S = 60.0  # the two verdicts start together: their first calls come seconds apart


class _Rendezvous(SimulatorServer):
    """The simulator of one use case, answering its `default_reply`; in each round it holds its
    first request until the partner's first request of the round has arrived (or MEET_TIMEOUT_S)."""

    partner: _Rendezvous

    def __init__(self, answer: str):
        super().__init__(rules={"default_reply": answer})
        self.arrived = threading.Event()
        self.met: list[bool] = []  # per round: the partner's request came while this one was held
        self._first = threading.Lock()

    def new_round(self) -> None:
        self.arrived.clear()

    def latency_seconds(self, messages: list) -> float:
        with self._first:
            first = not self.arrived.is_set()
            self.arrived.set()
        if first:
            self.met.append(self.partner.arrived.wait(MEET_TIMEOUT_S))
        return 0.0


EXPERIMENT = """\
name: {name}
flow: flows/{name}/standard
connections:
  - name: open_ai_connection
    type: open_ai
    api_base: {endpoint}
    api_key: {name}-key
datasets:
  - name: first
    source: datasets/{name}/rows.jsonl
    mappings:
      question: ${{data.question}}
  - name: second
    source: datasets/{name}/more.jsonl
    mappings:
      question: ${{data.question}}
evaluators:
  - name: exact
    flow: flows/{name}/evaluation
    datasets:
      - name: first_eval
        reference: first
        mappings:
          groundtruth: ${{data.label}}
          prediction: ${{run.outputs.answer}}
      - name: second_eval
        reference: second
        mappings:
          groundtruth: ${{data.label}}
          prediction: ${{run.outputs.answer}}
runtime:
  worker_count: 2
  max_parallel: 1  # the second run starts (and reads the connection store) after the first ended
evaluation: {{primary_metric: accuracy}}
gates:
  - {{metric: accuracy, op: ">=", threshold: 1.0}}
"""


def _use_case(repo: Path, name: str, sim: _Rendezvous) -> None:
    """`make_llm_use_case`'s flow and evaluator, two datasets, the LLM at `sim`."""
    answer = f"{name}-answer"
    make_llm_use_case(repo, name, answer)
    (repo / f"configs/{name}/simulator.yaml").unlink()
    write(repo / f"configs/{name}/experiment.yaml", EXPERIMENT.format(name=name, endpoint=sim.openai_base_url))
    rows = [{"question": f"another question {i} of {name}", "label": answer} for i in range(4)]
    write(repo / f"datasets/{name}/more.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _pf(home: Path, code: str) -> str:
    """Run promptflow as the user would, in their HOME."""
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(SRC)}
    env.pop("GENAIOPS_ENGINE_HOME", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return done.stdout


USER_CONNECTION = f"""
from promptflow.client import PFClient
from promptflow.entities import OpenAIConnection
PFClient().connections.create_or_update(OpenAIConnection(
    name="open_ai_connection", api_key="user-own-key-0000", base_url="{USER_BASE_URL}"))
"""
READ_CONNECTION = """
from promptflow.client import PFClient
c = PFClient().connections.get("open_ai_connection", with_secrets=True)
print(c.base_url, c.api_key)
"""


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _verdict(repo: Path, home: Path, use_case: str) -> tuple[int, dict, str]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(SRC), "TMPDIR": str(home.parent / "tmp")}
    env.pop("GENAIOPS_ENGINE_HOME", None)
    env.pop("GENAIOPS_STATE_DIR", None)
    done = subprocess.run([sys.executable, "-m", "genaiops", "--repo", str(repo), "run", "verdict",
                           "-u", use_case, "--force", "--no-progress", "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    try:
        payload = json.loads(done.stdout)
    except ValueError:
        payload = {}
    return done.returncode, payload, done.stderr[-2000:]


def _answers(repo: Path, payload: dict) -> set[str]:
    """What the LLM answered in the runs this verdict made (read from the ledger it wrote)."""
    answers = set()
    for run in payload["experiment"]["runs"]:
        outputs = repo / ".genaiops/ledger/runs" / f"{run['key']}.outputs.jsonl"
        for line in outputs.read_text().splitlines():
            answers.add(json.loads(line)["outputs"]["answer"])
    return answers


@pytest.mark.timeout(900)  # a few rounds of two real verdicts (each ~40 s wall on a loaded 2-core box)
def test_two_verdicts_at_once_never_cross_answers_nor_touch_the_users_connection(tmp_path):
    repo, home = tmp_path / "repo", tmp_path / "home"
    alpha_sim, beta_sim = _Rendezvous("alpha-answer").start(), _Rendezvous("beta-answer").start()
    alpha_sim.partner, beta_sim.partner = beta_sim, alpha_sim
    try:
        _use_case(repo, "alpha", alpha_sim)
        _use_case(repo, "beta", beta_sim)
        home.mkdir()
        (tmp_path / "tmp").mkdir()
        _pf(home, USER_CONNECTION)  # the user's own connection of the same name
        before = _digest(home)
        assert any(".promptflow" in name for name in before)

        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            for round_ in range(ROUNDS):
                alpha_sim.new_round()
                beta_sim.new_round()
                alpha, beta = pool.map(lambda uc: _verdict(repo, home, uc), ["alpha", "beta"])
                for use_case, (code, payload, err) in (("alpha", alpha), ("beta", beta)):
                    gates = [(g.get("metric"), g.get("status"), g.get("message")) for g in
                             (payload.get("evaluate") or {}).get("gates") or []]
                    assert code == 0, f"round {round_}: {use_case} exit {code}: {gates} {err}"
                    assert payload["experiment"]["totals"]["reused"] == 0
                    assert len(payload["experiment"]["runs"]) == 2, f"round {round_}"
                    assert _answers(repo, payload) == {f"{use_case}-answer"}, f"round {round_}"
                # the two verdicts met: each one's first LLM call waited for the other's
                assert alpha_sim.met == beta_sim.met == [True] * (round_ + 1), (alpha_sim.met, beta_sim.met)
        print(f"{ROUNDS} rounds of two concurrent verdicts in {time.monotonic() - started:.1f} s")
    finally:
        alpha_sim.stop()
        beta_sim.stop()

    assert _digest(home) == before  # not a byte of the user's promptflow home (or keyring) changed
    assert _pf(home, READ_CONNECTION).split() == [USER_BASE_URL, "user-own-key-0000"]
    assert list((tmp_path / "tmp").glob("genaiops-home-*")) == []  # each command removed its own
