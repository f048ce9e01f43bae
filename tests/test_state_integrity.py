"""A damaged `.genaiops/` is never trusted, and never a traceback: through the CLI, damage in the
run ledger, the evaluation store, the registry and the best-variant pointer is quarantined with a
note naming the file, and genaiops re-runs, rebuilds or refuses with what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import copy_use_case
from repo_factory import CONFIG, make_repo, write

from genaiops.cli import main
from genaiops.workspace.integrity import seal

CODE_EVALUATOR = "def score(groundtruth, prediction):\n    return float(groundtruth == prediction)\n"


@pytest.fixture
def repo(tmp_path, state_dir, monkeypatch):
    monkeypatch.delenv("DEMO_KEY", raising=False)
    """The demo on the python engine: these tests are about the state folder, not an engine."""
    root = make_repo(tmp_path / "repo", CONFIG.replace(
        "    flow: flows/demo/evaluation\n", "    code: evaluators/exact.py:score\n").replace(
        "metric: accuracy", "metric: exact"), engine="python")
    write(root / "evaluators/exact.py", CODE_EVALUATOR)
    return root


def genaiops(repo: Path, capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--repo", str(repo), *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def experiment(repo, capsys) -> dict:
    code, out, err = genaiops(repo, capsys, "run", "experiment", "-u", "demo", "--json", "--no-progress")
    assert code == 0, err
    return {**json.loads(out), "stderr": err}


def quarantined(state_dir: Path) -> list[str]:
    return sorted(p.name for p in (state_dir / "quarantine").rglob("*") if p.is_file())


def test_truncated_outputs_are_quarantined_and_run_again(repo, state_dir, capsys):
    """A truncated outputs.jsonl used to be reused as "2 ok", and evaluate then passed."""
    key = experiment(repo, capsys)["runs"][0]["key"]
    outputs = state_dir / "ledger" / "runs" / f"{key}.outputs.jsonl"
    outputs.write_text(outputs.read_text().splitlines()[0] + "\n")

    code, _out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--no-progress")
    assert code == 1  # the run is not evaluated: never a PASS on half the outputs
    assert f"{key}.outputs.jsonl is damaged" in err and "moved to" in err
    assert quarantined(state_dir) == [f"{key}.json", f"{key}.outputs.jsonl"]

    again = experiment(repo, capsys)
    assert not again["runs"][0]["reused"] and again["runs"][0]["lines_ok"] == 2
    assert genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--no-progress")[0] == 0


def test_a_garbled_run_record_is_run_again_not_an_internal_error(repo, state_dir, capsys):
    key = experiment(repo, capsys)["runs"][0]["key"]
    record = state_dir / "ledger" / "runs" / f"{key}.json"
    record.write_text(json.dumps({"key": key, "status": "completed", "lines_ok": 2}))
    again = experiment(repo, capsys)
    assert not again["runs"][0]["reused"]
    assert f"{key}.json is damaged (carries no hash" in again["stderr"]
    assert "the run is run again" in again["stderr"]


def test_a_damaged_experiment_and_latest_pointer(repo, state_dir, capsys):
    first = experiment(repo, capsys)["experiment_id"]
    second = experiment(repo, capsys)["experiment_id"]
    experiments = state_dir / "ledger" / "experiments"
    (experiments / "latest-demo.json").write_text('{"id": "demo-')  # truncated
    code, _out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--no-progress")
    assert code == 0 and "latest-demo.json is damaged" in err and second in err
    (experiments / f"{first}.json").write_text("{}")
    code, out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--experiment", first,
                              "--json")
    assert code == 1 and f"experiment {first} is damaged" in json.loads(out)["error"]


def test_a_damaged_evaluation_record_is_evaluated_again(repo, state_dir, capsys):
    experiment(repo, capsys)
    assert genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--no-progress")[0] == 0
    [stored] = (state_dir / "evaluations" / "runs").glob("*.json")
    data = json.loads(stored.read_text())
    data["rows"][0]["scores"] = {"exact": 0.0}
    stored.write_text(json.dumps(data))
    code, _out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--json")
    assert code == 0 and f"{stored.name} is damaged" in err and "evaluation runs again" in err


def test_a_truncated_registry_catalogue_keeps_its_versions(repo, state_dir, capsys):
    """A 0-byte catalogue used to restart at v1 silently."""
    assert genaiops(repo, capsys, "run", "init", "-u", "demo")[0] == 0
    (state_dir / "registry" / "catalog.sqlite").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{state_dir}/registry/catalog.sqlite{suffix}").unlink(missing_ok=True)
    code, out, err = genaiops(repo, capsys, "run", "init", "-u", "demo", "--json")
    assert code == 0
    assert json.loads(out)["datasets"][0] | {"content_hash": None, "uri": None} == {
        "name": "rows", "version": 1, "status": "unchanged", "content_hash": None, "uri": None}
    assert "catalog.sqlite is damaged" in err and "rebuilt from its 1 registration record" in err


def test_a_damaged_registry_blob_is_refused_then_stored_again(repo, state_dir, capsys):
    assert genaiops(repo, capsys, "run", "init", "-u", "demo")[0] == 0
    [blob] = (state_dir / "registry" / "blobs" / "sha256").iterdir()
    blob.write_text('{"text": "not what was registered"}\n')
    code, _out, err = genaiops(repo, capsys, "registry", "show", "rows")
    assert code == 1 and "registered bytes of local:rows:1 are damaged" in err
    assert genaiops(repo, capsys, "run", "init", "-u", "demo")[0] == 0
    assert blob.read_bytes() == (repo / "datasets/demo/rows.jsonl").read_bytes()
    assert genaiops(repo, capsys, "registry", "show", "rows")[0] == 0


@pytest.mark.promptflow
def test_a_damaged_best_variant_pointer_is_never_followed(tmp_path, state_dir, trust_dir, capsys, monkeypatch):
    repo = copy_use_case(tmp_path / "repo", "classification")
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker: deploy would stop right after choosing
    pointer = state_dir / "pointers" / "best-classification.json"
    pointer.parent.mkdir(parents=True)
    good = seal({"variant": "summarize.full+classify.careful", "flow_hash": "sha256:x",
                 "variant_spec": {"nodes": {"summarize": "full", "classify": "careful"}, "init": {}}})
    edited = {**good, "variant": "summarize.brief+classify.terse",
              "variant_spec": {"nodes": {"summarize": "brief", "classify": "terse"}, "init": {}}}
    pointer.write_text(json.dumps(edited))
    deploy = ("run", "deploy", "-u", "classification", "-e", "local", "--variant", "best")
    code, _out, err = genaiops(repo, capsys, *deploy)
    assert code == 1 and "best-variant pointer is damaged" in err and "re-run `genaiops run evaluate`" in err
    assert not pointer.exists()
    code, _out, err = genaiops(repo, capsys, *deploy)  # no silent fall-back to the default variant
    assert code == 1 and "was quarantined as damaged" in err


def test_leftovers_of_killed_processes_are_swept_on_start(repo, state_dir, capsys):
    """An `.incoming-*` blob copy, a staging folder and a temp file of a process that is gone are
    removed on the next start; those of a live process stay."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    from genaiops.workspace.sweep import owner_tag

    host_tag = owner_tag().rsplit("-", 1)[0]
    leftovers = [state_dir / f"registry/blobs/sha256/.incoming-{host_tag}-{dead}-abc/blob",
                 state_dir / f"staging/demo-x-00.{host_tag}-{dead}/flow/normalize.py",
                 state_dir / f"ledger/runs/.k.json.{host_tag}-{dead}.x1.tmp"]
    alive = state_dir / f"staging/demo-y-00.{host_tag}-{os.getpid()}/flow/normalize.py"
    for path in [*leftovers, alive]:
        write(path, "partial")
    experiment(repo, capsys)
    assert [p for p in leftovers if p.parent.exists() and p.exists()] == []
    assert not (state_dir / f"staging/demo-x-00.{host_tag}-{dead}").exists()
    assert alive.exists()


def _as_written_before_the_rename(path: Path) -> None:
    """Rewrite a sealed record as genaiops wrote it when its fields were named after promptflow."""
    from genaiops.workspace.integrity import SEAL

    data = json.loads(path.read_text())
    data.pop(SEAL)
    old = {"engine_run": "pf_run", "engine_output": "pf_output"}
    path.write_text(json.dumps(seal({old.get(k, k): v for k, v in data.items()})))


def test_records_written_with_promptflow_field_names_are_still_read(repo, state_dir, capsys):
    """Run records and evaluation runs once said `pf_run` / `pf_output`: they are reused, not
    quarantined, and a summary.json that says `pf_run` keeps its digest (build accepts it)."""
    from genaiops.evaluation.summary import Summary

    key = experiment(repo, capsys)["runs"][0]["key"]
    code, out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--json")
    assert code == 0, err
    record = state_dir / "ledger" / "runs" / f"{key}.json"
    assert "engine_run" in json.loads(record.read_text())
    _as_written_before_the_rename(record)
    [stored] = (state_dir / "evaluations" / "runs").glob("*.json")
    _as_written_before_the_rename(stored)
    assert '"pf_run"' in record.read_text() and '"pf_run"' in stored.read_text()

    again = experiment(repo, capsys)
    assert again["runs"][0]["reused"] and "damaged" not in again["stderr"]
    assert again["runs"][0]["engine_run"] == json.loads(record.read_text())["pf_run"]
    code, out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--json")
    assert code == 0 and "damaged" not in err
    assert all(e["reused"] for e in json.loads(out)["evaluations"])

    summary = json.loads(out)
    [evaluation] = summary["evaluations"]
    evaluation["pf_run"] = evaluation.pop("engine_run")
    summary["digest"] = None
    old = Summary.from_dict(summary)
    summary["digest"] = old.digest()  # what evaluate wrote then: the digest of these keys
    read = Summary.from_dict(summary)
    assert read.recorded_digest == read.digest() and "pf_run" in read.to_dict()["evaluations"][0]


def test_an_experiment_record_of_another_version_is_read_typed(repo, state_dir, capsys):
    """Experiment records are read into `ExperimentRecord`: written with the same keys as ever, and
    one lacking a field (an older genaiops) or carrying an unknown one (a newer) is still read and
    evaluated, not quarantined."""
    from genaiops.workspace import Workspace
    from genaiops.workspace.integrity import SEAL
    from genaiops.workspace.ledger import ExperimentRecord, RunRef

    run = experiment(repo, capsys)
    path = state_dir / "ledger" / "experiments" / f"{run['experiment_id']}.json"
    data = json.loads(path.read_text())
    assert set(data) == {"id", "use_case", "env", "flow", "flow_kind", "variants", "started_at",
                         "finished_at", "runs", "ok", SEAL}
    assert data["runs"] == [{"key": r["key"], "variant": r["variant"], "dataset": r["dataset"],
                             "reused": False} for r in run["runs"]]
    for gone in ("ok", "flow_kind", SEAL):
        data.pop(gone)
    data["runs"][0]["from_the_future"] = data["from_the_future"] = 1
    path.write_text(json.dumps(seal(data)))

    read = Workspace.for_repo(repo).ledger().load_experiment("demo")
    assert isinstance(read, ExperimentRecord) and (read.ok, read.flow_kind) == (True, "")
    assert read.runs[0] == RunRef(run["runs"][0]["key"], run["runs"][0]["variant"],
                                  run["runs"][0]["dataset"], False)
    code, out, err = genaiops(repo, capsys, "run", "evaluate", "-u", "demo", "--json")
    assert code == 0 and "damaged" not in err, err
    assert json.loads(out)["experiment_id"] == run["experiment_id"]
