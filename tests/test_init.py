"""`genaiops run init`: connections in the promptflow store, dataset registration, summary, no secrets.
Tests of genaiops' own checks (datasets, config errors) use the demo on the python engine."""

from __future__ import annotations

import json

import pytest
from repo_factory import make_repo

from genaiops.cli import main

CANARY = "canary-init-5b1e0c77"


@pytest.fixture
def repo(tmp_path, monkeypatch, state_dir):
    monkeypatch.delenv("DEMO_KEY", raising=False)
    return make_repo(tmp_path / "repo")


@pytest.fixture
def pyrepo(tmp_path, monkeypatch, state_dir):
    """The demo on the python engine: for what init checks itself, not what promptflow stores."""
    monkeypatch.delenv("DEMO_KEY", raising=False)
    return make_repo(tmp_path / "repo", engine="python")


def stored_connection(name: str) -> dict:
    """The connection as promptflow keeps it in the commands' private home (genaiops never writes
    the user's ~/.promptflow), read by promptflow itself in a child process with that HOME."""
    import os
    import subprocess
    import sys

    from genaiops.engines.processenv import command_home

    code = ("import json, sys\nfrom promptflow.client import PFClient\n"
            "c = PFClient().connections.get(sys.argv[1], with_secrets=True)\n"
            "print(json.dumps({k: getattr(c, k, None) for k in ('base_url', 'api_base', 'api_key')}))")
    done = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(command_home())}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def init(repo, capsys, *extra):
    code = main(["--repo", str(repo), "run", "init", "--use-case", "demo", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.promptflow  # the connection in promptflow's store
def test_init_creates_connection_and_registers_datasets(repo, capsys):
    code, out, _ = init(repo, capsys, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["connections"] == [{
        "name": "llm", "type": "open_ai", "api_base": "simulator", "simulator": True,
        "endpoint": "http://127.0.0.1:8765/v1", "action": result["connections"][0]["action"]}]
    assert result["connections"][0]["action"] in {"created", "updated"}
    assert result["datasets"][0]["status"] == "registered" and result["datasets"][0]["version"] == 1

    stored = stored_connection("llm")
    assert stored["base_url"] == "http://127.0.0.1:8765/v1"
    assert stored["api_key"] == "simulator-key"

    code, out, _ = init(repo, capsys)
    assert code == 0
    assert "unchanged" in out and "unchanged (v1)" in out
    assert "LLM SIMULATOR" in out  # honest label


def test_changed_dataset_gets_a_new_version(pyrepo, capsys):
    init(pyrepo, capsys)
    with (pyrepo / "datasets/demo/rows.jsonl").open("a") as handle:
        handle.write('{"text": "new", "label": "new"}\n')
    code, out, _ = init(pyrepo, capsys, "--json")
    assert json.loads(out)["datasets"][0] | {"content_hash": None, "uri": None} == {
        "name": "rows", "version": 2, "status": "registered", "content_hash": None, "uri": None}


@pytest.mark.promptflow  # the key in promptflow's store, nowhere else
def test_init_with_real_endpoint_settings_from_dotenv_never_prints_the_key(repo, capsys, state_dir):
    (repo / ".env").write_text(f"DEMO_KEY={CANARY}\n")
    config = (repo / "configs/demo/experiment.yaml").read_text()
    (repo / "configs/demo/experiment.yaml").write_text(
        config.replace("api_base: simulator", "api_base: https://example.openai.azure.com")
        .replace("type: open_ai", "type: azure_open_ai\n    api_version: 2024-06-01"))
    code, out, err = init(repo, capsys, "--json")
    assert code == 0, out
    assert CANARY not in out + err
    stored = stored_connection("llm")
    assert stored["api_key"] == CANARY and stored["api_base"] == "https://example.openai.azure.com"
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_init_config_error_is_exit_2_without_traceback(pyrepo, capsys):
    (pyrepo / "configs/demo/experiment.yaml").write_text("name: demo\nflow: [\n")
    code, out, err = init(pyrepo, capsys)
    assert code == 2
    assert "malformed YAML" in err and "Traceback" not in err


def test_a_bad_line_in_the_middle_of_a_dataset_stops_init_and_experiment(pyrepo, capsys, state_dir):
    """Checked whole at init (exit 2, file:line, nothing registered), and again when the file is
    damaged after init: the experiment refuses before any LLM call."""
    rows = pyrepo / "datasets/demo/rows.jsonl"
    good = rows.read_text()
    rows.write_text(good + '{"text": "half a row",\n' + good)
    code, _out, err = init(pyrepo, capsys)
    assert code == 2
    assert "datasets/demo/rows.jsonl:3: not valid JSON" in err and "Traceback" not in err
    assert not (state_dir / "registry" / "catalog.sqlite").exists()

    rows.write_text(good)
    assert init(pyrepo, capsys)[0] == 0
    rows.write_text(good + '{"label": "no text column"}\n')
    code = main(["--repo", str(pyrepo), "run", "experiment", "-u", "demo", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "datasets/demo/rows.jsonl:3: row has no column 'text'" in err
    assert not list(state_dir.glob("ledger/runs/*.json"))
