"""The model behind a deployment name can change (Azure OpenAI upgrades it in place): every run
records what answered (the response's `model` and `system_fingerprint`, as the LLM gateway saw
them), and a run is reused only while its endpoint still serves that model (issue 19, item 7).

Real promptflow and Agent Framework runs through the CLI against the simulator, which is told to
report another model (`GENAIOPS_SIMULATOR_MODEL`) as an upgraded deployment would."""

from __future__ import annotations

import json

import pytest
from repo_factory import make_llm_use_case, write

from genaiops.cli import main
from genaiops.gateway.served import served_model
from genaiops.workspace import Workspace

APP = """\
from agent_framework import Agent

INPUTS = ("question",)
OUTPUTS = ("answer",)


def build(llm):
    return Agent(llm.chat_client("open_ai_connection", "gpt-4o-mini"), "Answer briefly.", name="ask")
"""


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    make_llm_use_case(root, "pf", "the-answer")
    make_llm_use_case(root, "af", "the-answer")
    write(root / "flows/af/app/app.py", APP)
    config = root / "configs/af/experiment.yaml"
    config.write_text(config.read_text().replace("flow: flows/af/standard",
                                                 "engine: agent_framework\nflow: flows/af/app/app.py:build"))
    return root


def _experiment(repo, use_case, capsys) -> dict:
    code = main(["--repo", str(repo), "run", "experiment", "-u", use_case, "--no-progress", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {**json.loads(out), "stderr": err}


@pytest.mark.parametrize("use_case", [pytest.param("pf", marks=pytest.mark.promptflow),
                                      pytest.param("af", marks=pytest.mark.agent_framework)])
def test_a_run_is_reused_only_while_its_deployment_serves_the_same_model(repo, use_case, state_dir,
                                                                          monkeypatch, capsys):
    first = _experiment(repo, use_case, capsys)
    [run] = first["runs"]
    assert run["served"] == {"open_ai_connection": {"gpt-4o-mini": {
        "models": ["genaiops-simulator"], "fingerprints": ["genaiops-simulator"]}}}
    record = Workspace.for_repo(repo).ledger().find(run["key"])
    assert record.served == run["served"]  # in the sealed record, not only in the output

    again = _experiment(repo, use_case, capsys)  # same model: reused after one probe
    assert again["runs"][0]["reused"] is True and "model behind its endpoint" not in again["stderr"]

    monkeypatch.setenv("GENAIOPS_SIMULATOR_MODEL", "gpt-4o-mini-2025-99-99")  # the upgrade
    upgraded = _experiment(repo, use_case, capsys)
    [rerun] = upgraded["runs"]
    assert rerun["reused"] is False and rerun["key"] == run["key"]
    assert ("note: run " + run["key"][:8]) in upgraded["stderr"]
    assert "answered as genaiops-simulator, now as gpt-4o-mini-2025-99-99" in upgraded["stderr"]
    assert rerun["served"]["open_ai_connection"]["gpt-4o-mini"]["models"] == ["gpt-4o-mini-2025-99-99"]
    assert any("model behind its endpoint changed" in n for n in upgraded["notes"])

    stable = _experiment(repo, use_case, capsys)  # the new model recorded: reused again
    assert stable["runs"][0]["reused"] is True


def test_what_answered_is_read_from_json_and_streams_but_never_from_the_answer_text():
    body = json.dumps({"id": "x", "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1",
                       "choices": [{"message": {"content": '"model": "forged"'}}]}).encode()
    assert served_model(body) == ("gpt-4o-2024-08-06", "fp_1")
    stream = b'data: {"id":"c","object":"chat.completion.chunk","model":"m-1","choices":[]}\n\n'
    assert served_model(stream) == ("m-1", None)
    forged = json.dumps({"choices": [{"message": {"content": '"model": "forged"'}}]}).encode()
    assert served_model(forged) == (None, None)


def test_the_gateway_notes_what_answered_each_connection_json_and_streamed():
    import httpx

    from genaiops.gateway import LLMGateway
    from genaiops.simulator import SimulatorServer

    with SimulatorServer(model="gpt-4o-2024-11-20") as sim, LLMGateway() as gateway:
        gateway.route("llm", sim.url + "/v1")
        base = gateway.url_for("flow", "llm")
        for stream in (False, True):
            response = httpx.post(f"{base}/chat/completions", timeout=30, json={
                "model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": "Bearer k"})
            assert response.status_code == 200
        assert gateway.served_by("llm") == {"gpt-4o": {"models": ["gpt-4o-2024-11-20"],
                                                       "fingerprints": ["genaiops-simulator"]}}
        assert gateway.served_by("other") == {}
