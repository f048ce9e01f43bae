"""Record and replay through the LLM gateway (`--llm record|replay`): the gateway keeps what the
upstream answered in the use case's cassette, and replays it with no upstream connection and no
key; a call it has no answer for fails the command (exit 2) with what changed.

Unit tests drive the gateway with httpx against the simulator; the CLI tests run the
classification sample on both engines (promptflow DAG, Agent Framework port), and the checks
that are the gateway's own (a cassette's model, GENAIOPS_LLM) a scaffolded python-engine flow."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest
from deploy_helpers import PORT as MAF
from deploy_helpers import copy_classification_and_port, edited, run_cli

from genaiops.cli import main
from genaiops.gateway import LLMGateway
from genaiops.gateway.cassette import Cassette, cassette_hash, load_entries
from genaiops.simulator import SimulatorServer

CANARY = "canary-sk-replay-7f3e19a0c2"


class CountingListener:
    """A loopback port that accepts connections and counts them (and answers nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def chat(content: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Sort tickets."},
                                                   {"role": "user", "content": content}],
            "temperature": 0, **extra}


def post(gateway: LLMGateway, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {CANARY}", "api-key": CANARY, "Cookie": f"s={CANARY}"}
    return httpx.post(gateway.url_for("flow", "llm") + "/chat/completions", json=body,
                      headers=headers, timeout=30)


def streamed_text(response: httpx.Response) -> str:
    parts = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def record(folder: Path, bodies: list[dict]) -> list[httpx.Response]:
    cassette = Cassette(folder, "record", frozenset({CANARY}))
    with SimulatorServer(port=0) as sim, LLMGateway() as gateway:
        gateway.use_cassette(cassette)
        gateway.route("llm", sim.url + "/v1")
        answers = [post(gateway, body) for body in bodies]
    cassette.save()
    return answers


def test_replay_answers_what_was_recorded_with_no_upstream_connection(tmp_path):
    bodies = [chat("I was charged twice"), chat("I was charged twice"),  # a repeat: two entries
              chat("The app crashes", stream=True)]
    recorded = record(tmp_path / "c", bodies)
    assert [r.status_code for r in recorded] == [200, 200, 200]
    entries = load_entries(tmp_path / "c")
    assert sorted(len(e["answers"]) for e in entries.values()) == [1, 2]  # by occurrence
    text = "".join(p.read_text() for p in (tmp_path / "c").rglob("*.json"))
    assert CANARY not in text and "Bearer" not in text and "Cookie" not in text.capitalize()

    with CountingListener() as upstream, LLMGateway() as gateway:
        gateway.use_cassette(Cassette(tmp_path / "c", "replay"))
        gateway.route("llm", upstream.url + "/v1")
        replayed = [post(gateway, body) for body in bodies]
    assert upstream.accepted == 0
    assert [r.json()["choices"][0]["message"]["content"] for r in replayed[:2]] == \
        [r.json()["choices"][0]["message"]["content"] for r in recorded[:2]]
    assert streamed_text(replayed[2]) == streamed_text(recorded[2]) != ""
    assert replayed[2].headers["content-type"].startswith("text/event-stream")
    assert gateway.stats.snapshot()["outcomes"] == {"replayed": 3}


def test_recording_again_changes_no_file_when_the_answers_are_the_same(tmp_path):
    bodies = [chat("Where is my parcel?"), chat("Where is my parcel?", stream=True)]
    record(tmp_path / "c", bodies)
    first = cassette_hash(tmp_path / "c")
    record(tmp_path / "c", bodies)
    assert cassette_hash(tmp_path / "c") == first  # ids and timestamps are not kept as they came


def test_a_replay_miss_is_a_non_retryable_400_with_the_prompt_diff(tmp_path):
    record(tmp_path / "c", [chat("I was charged twice")])
    cassette = Cassette(tmp_path / "c", "replay")
    with LLMGateway() as gateway:
        gateway.use_cassette(cassette)
        gateway.route("llm", "http://replay.invalid")
        changed = post(gateway, chat("I was charged three times"))
        same = post(gateway, chat("I was charged twice"))
        again = post(gateway, chat("I was charged twice"))  # one repeat more than recorded
    assert changed.status_code == 400 and changed.headers["x-should-retry"] == "false"
    assert changed.json()["error"]["code"] == "replay_miss"
    assert same.status_code == 200 and again.status_code == 400
    first, second = cassette.misses
    assert "-  I was charged twice" in first.diff and "+  I was charged three times" in first.diff
    assert "recorded 1 time(s), this is call 2" in second.describe()


# -- through the CLI, on both engines ---------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_classification_and_port(tmp_path_factory.mktemp("repo"))


def scaffold_tone(root: Path) -> Path:
    """The use case `tone` as `genaiops new --kind python` writes it: a function calling the LLM
    through `openai_client("llm")` (the gateway's checks, not an engine's calls, under test)."""
    for folder in ("flows", "configs", "datasets"):
        (root / folder).mkdir(parents=True)
    assert main(["--repo", str(root), "new", "tone", "--kind", "python"]) == 0
    return root


def experiment(repo: Path, use_case: str, mode: str, capsys, *extra,
               json_out: bool = True) -> tuple[int, dict | str]:
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", use_case, "-e", "pr",
                              "--llm", mode, *(["--json"] if json_out else []), *extra], capsys)
    try:
        return code, json.loads(out)
    except ValueError:
        return code, out + err


def outputs(state: Path, result: dict) -> list[tuple]:
    """Each run's lines as the ledger keeps them (outputs, tokens, errors), latencies aside."""
    runs = []
    for run in result["runs"]:
        path = state / "ledger" / "runs" / f"{run['key']}.outputs.jsonl"
        lines = [{k: v for k, v in json.loads(line).items() if k != "latency_s"}
                 for line in path.read_text().splitlines()]
        runs.append((run["variant"], run["lines_ok"], run["lines_failed"], lines))
    return runs


@pytest.mark.parametrize("use_case", [pytest.param("classification", marks=pytest.mark.promptflow),
                                      pytest.param(MAF, marks=pytest.mark.agent_framework)])
def test_record_then_replay_offline_gives_identical_results(repo, state, use_case, capsys,
                                                            monkeypatch):
    """Recorded against a simulator as the endpoint, replayed with it stopped and the endpoint a
    listener that counts connections: the same outputs, no connection, and the key is nowhere
    in the cassette. An edited prompt then fails the replay with exit 2, naming the run, the
    lines and the node that missed (a promptflow node, a workflow executor), and the diff."""
    monkeypatch.setenv("LLM_API_KEY", CANARY)
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml", port=0) as sim:
        monkeypatch.setenv("LLM_API_BASE", sim.url + "/v1")
        code, recorded = experiment(repo, use_case, "record", capsys)
        assert code == 0, recorded
        assert sim.stats.snapshot()["requests"] > 0
    folder = repo / "cassettes" / use_case
    files = list(folder.rglob("*.json"))
    assert len(files) >= 10
    assert not [f for f in files if CANARY in f.read_text()]

    with CountingListener() as upstream:
        monkeypatch.setenv("LLM_API_BASE", upstream.url + "/v1")
        code, replayed = experiment(repo, use_case, "replay", capsys)
        assert code == 0, replayed
        assert upstream.accepted == 0
        assert outputs(state, replayed) == outputs(state, recorded)
        assert replayed["gateway"]["outcomes"] == {"replayed": recorded["gateway"]["outcomes"]["answered"]}
        code, again = experiment(repo, use_case, "replay", capsys)  # keyed on the cassette: reused
        assert code == 0 and again["totals"]["reused"] == again["totals"]["runs"]

        prompt = repo / ("flows/classification/standard/classify_careful.jinja2"
                         if use_case == "classification" else "flows/classification/maf/app.py")
        with edited(prompt, "meticulous support triage agent", "careful support triage agent"):
            code, result = experiment(repo, use_case, "replay", capsys)
            assert code == 2 and result["replay_misses"]
            code, message = experiment(repo, use_case, "replay", capsys, json_out=False)
        assert upstream.accepted == 0
    assert code == 2, message
    assert "no recorded answer" in message and "in run " in message and "line 0" in message
    assert "(node classify)" in message  # the node whose call missed; summarize's calls replayed
    assert "-  You are a meticulous support triage agent." in message
    assert "+  You are a careful support triage agent." in message


def test_a_cassette_from_another_model_is_refused(state, capsys, monkeypatch, tmp_path):
    repo = scaffold_tone(tmp_path / "repo")
    with SimulatorServer(rules_path=repo / "configs/tone/simulator.yaml", port=0) as sim:
        monkeypatch.setenv("LLM_API_BASE", sim.url + "/v1")
        code, out = experiment(repo, "tone", "record", capsys)
        assert code == 0, out
    config = repo / "configs/tone/experiment.yaml"
    with edited(config, "    api_key: ${env:LLM_API_KEY:-simulator-key}\n",
                "    api_key: ${env:LLM_API_KEY:-simulator-key}\n    model: gpt-4o\n"):
        code, message = experiment(repo, "tone", "replay", capsys)
    assert code == 2
    assert "recorded from genaiops-simulator, but the config names model 'gpt-4o'" in \
        message["error"]


def test_replay_without_a_cassette_says_how_to_record(tmp_path, state, capsys):
    repo = copy_classification_and_port(tmp_path / "repo")
    code, message = experiment(repo, "classification", "replay", capsys)
    assert code == 2 and "no recorded answers in" in message["error"]
    assert "--llm record" in message["hint"]


@pytest.mark.promptflow
def test_a_replayed_verdict_names_the_cassette_it_answered_from(repo, state, capsys, monkeypatch):
    """`run verdict -e pr --llm replay` (the PR check): init pins the cassette folder in the
    registry like a dataset, and the evaluation summary names its hash."""
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml", port=0) as sim:
        monkeypatch.setenv("LLM_API_BASE", sim.url + "/v1")
        code, out = experiment(repo, "classification", "record", capsys)
        assert code == 0, out
    pinned = cassette_hash(repo / "cassettes/classification")
    monkeypatch.delenv("LLM_API_BASE")
    code, out, err = run_cli(["--repo", str(repo), "run", "verdict", "-u", "classification", "-e",
                              "pr", "--llm", "replay", "--json"], capsys)
    assert code == 0, out + err
    result = json.loads(out)
    assert result["evaluate"]["llm"]["mode"] == "replay"
    assert result["evaluate"]["llm"]["cassette"] == pinned
    registered = {d["name"]: d for d in result["init"]["datasets"]}
    assert registered["classification-cassettes"]["content_hash"] == pinned


def test_the_record_pipeline_is_valid_and_pr_stages_replay(repo_root):
    """The record pipeline validates against the Azure Pipelines schema; PR and parity stages
    replay (GENAIOPS_LLM) and so need no LLM key."""
    import pipeline_schema as ps

    assert ps.validate_file(repo_root / "azure-pipelines.record.yml") == []
    expanded = ps.expand_pipeline(repo_root / "azure-pipelines.yml").pipeline
    for stage in expanded["stages"]:
        if stage["stage"].startswith(("PR_", "Parity_")):
            assert {"name": "GENAIOPS_LLM", "value": "replay"} in stage["variables"], stage["stage"]


def test_genaiops_llm_sets_the_default_and_is_checked(tmp_path, state, capsys, monkeypatch):
    repo = scaffold_tone(tmp_path / "repo")
    monkeypatch.setenv("GENAIOPS_LLM", "replay")
    code, message = experiment(repo, "tone", "live", capsys)  # the flag wins
    assert code == 0, message
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "tone",
                              "-e", "pr", "--json"], capsys)
    assert code == 2 and "no recorded answers" in json.loads(out)["error"]
    monkeypatch.setenv("GENAIOPS_LLM", "sometimes")
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "tone",
                              "-e", "pr", "--json"], capsys)
    assert code == 2 and "GENAIOPS_LLM must be live, record or replay" in out
