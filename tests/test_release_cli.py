"""`genaiops run build` and `genaiops run deploy --evidence`, through the CLI, on a copy of the sample
repository: what they refuse before anything is built, registered or deployed. (Building, pushing
and deploying for real: test_pipeline_contract.py.)"""

from __future__ import annotations

import json

import pytest
from deploy_helpers import copy_use_case, run_cli

from genaiops.config import load_experiment
from genaiops.deploy.evidence import EVIDENCE_SCHEMA
from genaiops.deploy.variant import ChosenVariant
from genaiops.evaluation.store import SummaryStore
from genaiops.evaluation.summary import SUMMARY_SCHEMA, Summary, digest_of
from genaiops.hashing import hash_tree
from genaiops.phases.build import stage_candidate
from genaiops.phases.context import PhaseContext
from genaiops.workspace import Workspace

REGISTRY = "127.0.0.1:5999"
AZURE = {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE_NAME": "ws",
         "GENAIOPS_IMAGE_REGISTRY": REGISTRY, "GENAIOPS_RUNTIME_BACKEND": "local"}
NODES = {"summarize": "full", "classify": "careful"}
DIGEST = "sha256:" + "e" * 64


@pytest.fixture
def repo(tmp_path, state_dir, trust_dir, monkeypatch):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    return copy_use_case(tmp_path / "repo", "classification")


def _summary(repo, tmp_path, *, verdict="pass", use_case="classification", flow_hash=None, tamper=False,
             gates=()):
    """A summary.json as `run evaluate` writes it (digest recorded, kept in the state folder's
    evaluation store), with a best variant."""
    ctx = PhaseContext.for_config(load_experiment(repo, "classification"))
    data = {
        "schema": SUMMARY_SCHEMA, "id": "classification-eval-1", "use_case": use_case, "env": "dev",
        "experiment_id": "classification-1", "created_at": "2026-01-01T00:00:00Z",
        "flow": "flows/classification/standard", "flow_kind": "dag",
        "llm": {"simulator": True, "label": "simulator"},
        "evaluation": {"primary_metric": "accuracy", "higher_is_better": True, "confidence": 0.95, "alpha": 0.05,
                       "min_samples": 30},
        "datasets": {}, "metrics": [], "scores": [], "evaluations": [], "problems": [], "leaderboard": [],
        "best": {"variant": "summarize.full+classify.careful", "variant_spec": {"nodes": NODES, "init": {}},
                 "flow": "flows/classification/standard", "flow_kind": "dag",
                 "flow_hash": flow_hash or hash_tree(ctx.flow.root, ctx.engine.cache_patterns),
                 "run_keys": [], "metric": "accuracy", "value": 0.9, "ci_low": None, "ci_high": None},
        "gates": list(gates), "verdict": verdict, "baseline": None,
    }
    data["digest"] = digest_of(data)
    SummaryStore(Workspace.for_repo(repo)).keep(Summary.from_dict(data))
    if tamper:
        data["best"]["value"] = 0.99
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    return path


def _build(repo, summary, capsys, env="dev"):
    return run_cli(["--repo", str(repo), "run", "build", "-u", "classification", "-e", env,
                    "--summary", str(summary)], capsys)


@pytest.mark.parametrize("kwargs,code,message", [
    ({"verdict": "fail"}, 1, "did not pass its gates"),
    ({"tamper": True}, 1, "modified after `genaiops run evaluate` wrote it"),
    ({"use_case": "qa"}, 2, "evaluates use case 'qa', not 'classification'"),
    ({"flow_hash": "sha256:" + "0" * 64}, 1, "is not the one evaluation classification-eval-1 ran"),
])
def test_build_refuses_an_evaluation_it_cannot_release(repo, tmp_path, capsys, kwargs, code, message):
    exit_code, out, err = _build(repo, _summary(repo, tmp_path, **kwargs), capsys)
    assert (exit_code, out) == (code, "")
    assert message in err and "Traceback" not in err


FAILED_GATE = {"name": "accuracy", "metric": "accuracy", "type": "absolute", "op": ">=", "threshold": 0.8,
               "status": "fail", "message": "accuracy=0.61 fails >= 0.8", "value": 0.61, "baseline": None,
               "test": {}, "variant": "summarize.full+classify.careful"}


@pytest.mark.parametrize("forge,message", [
    ("drop the digest", "has no digest: it is not a summary.json as `genaiops run evaluate` wrote it"),
    ("digest again", "is not an evaluation kept in"),
])
def test_build_refuses_a_failed_summary_turned_into_a_pass(repo, tmp_path, capsys, monkeypatch, forge, message):
    """A failed evaluation's summary.json with its verdict flipped to pass: without its digest, or
    re-digested by hand. Only a summary kept by `run evaluate` under its own digest is released."""
    monkeypatch.setenv("GENAIOPS_BASE_IMAGE", "genaiops-test/no-such-base:never")  # nothing is built either way
    data = json.loads(_summary(repo, tmp_path, verdict="fail", gates=[FAILED_GATE]).read_text())
    data["verdict"] = "pass"
    if forge == "drop the digest":
        del data["digest"]
    else:
        data["digest"] = digest_of(data)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    code, out, err = _build(repo, forged, capsys)
    assert (code, out) == (1, ""), err
    assert message in err and "Traceback" not in err
    assert not list(Workspace.for_repo(repo).deploy_dir("classification").glob("evidence.json"))


def test_approve_shows_the_verdict_and_gates_of_the_evidence_and_refuses_a_failed_one(repo, tmp_path, capsys,
                                                                                   monkeypatch):
    """The approver sees the evaluation the evidence names, as `run evaluate` kept it: an evidence
    that claims a pass for a failed evaluation is shown as FAIL and not approved."""
    monkeypatch.setenv("GENAIOPS_IMAGE_REGISTRY", REGISTRY)
    failed = json.loads(_summary(repo, tmp_path, verdict="fail", gates=[FAILED_GATE]).read_text())["digest"]
    evidence = _evidence(repo, tmp_path, summary_digest=failed, verdict="pass",
                         gates=[{"name": "accuracy", "status": "pass", "message": "claimed"}])
    approve = ["--repo", str(repo), "approve", "-u", "classification", "-e", "prod", "--artifact", DIGEST,
               "--by", "alice", "--evidence", evidence]
    code, out, err = run_cli(approve, capsys)
    assert code == 1 and "whose verdict is fail (classification-eval-1): not approved" in err and "Traceback" not in err
    passed = json.loads(_summary(repo, tmp_path, gates=[{**FAILED_GATE, "status": "pass",
                                                          "message": "accuracy=0.93 meets >= 0.8"}]).read_text())
    evidence = _evidence(repo, tmp_path, summary_digest=passed["digest"])
    code, out, err = run_cli(approve[:-1] + [evidence], capsys)
    assert code == 0, err
    assert "evaluation classification-eval-1: verdict PASS" in out
    assert "gate accuracy: pass - accuracy=0.93 meets >= 0.8" in out
    assert f"summary {passed['digest'][:16]} as `run evaluate` kept it" in out
    code, out, err = run_cli(approve[:-1] + [_evidence(repo, tmp_path, summary_digest="a" * 64)], capsys)
    assert code == 0 and "which no `run evaluate` kept" in out and "claims verdict pass" in out
    code, _, err = run_cli(approve[:-1] + [_evidence(repo, tmp_path, summary_digest="a" * 64, verdict="fail")],
                           capsys)
    assert code == 1 and "whose verdict is fail: not approved" in err
    code, _, err = run_cli(approve[:8] + ["sha256:" + "9" * 64, "--by", "x", "--evidence", evidence], capsys)
    assert code == 2 and "is for image " + DIGEST in err


def test_build_needs_a_registry_to_push_to(repo, tmp_path, capsys):
    exit_code, _, err = _build(repo, _summary(repo, tmp_path), capsys, env="local")
    assert exit_code == 2 and "names no image registry to push to" in err and "GENAIOPS_IMAGE_REGISTRY" in err


def _evidence(repo, tmp_path, **changes) -> str:
    ctx = PhaseContext.for_config(load_experiment(repo, "classification", "dev"))
    chosen = ChosenVariant("summarize.full+classify.careful", NODES, {}, "best")
    candidate = stage_candidate(ctx, chosen, simulator_url=None)
    data = {"schema": EVIDENCE_SCHEMA, "use_case": "classification", "env": "dev",
            "variant": {"label": chosen.label, "nodes": NODES, "init": {}},
            "evaluated_flow_hash": "sha256:" + "1" * 64, "flow_hash": candidate.flow_hash,
            "evaluation_id": "classification-eval-1", "summary_digest": "f" * 64, "verdict": "pass", "gates": [],
            "git_commit": "c" * 40, "build_id": "7",
            "image": {"repository": f"{REGISTRY}/genaiops/classification", "digest": DIGEST,
                      "image_id": "sha256:" + "d" * 64, "tag": "genaiops/classification:abc", "labels": {}}}
    for key, value in changes.items():
        if key == "repository":
            data["image"]["repository"] = value
        else:
            data[key] = value
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("changes,message", [
    ({"flow_hash": "sha256:" + "0" * 64}, "but image " + DIGEST + " was built from sha256:000"),
    ({"verdict": "fail"}, "did not pass its gates"),
    ({"use_case": "qa"}, "the evidence is for use case 'qa'"),
    ({"repository": "other.azurecr.io/genaiops/classification"}, "is not in 127.0.0.1:5999"),
])
def test_deploy_refuses_evidence_that_does_not_match_before_touching_anything(repo, tmp_path, capsys, changes,
                                                                             message):
    code, out, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev",
                              "--evidence", _evidence(repo, tmp_path, **changes)], capsys)
    assert code == 1, err
    assert message in err and "Traceback" not in err
    assert "registered" not in err and "unchanged" not in err  # refused before the registry


def test_unreadable_evidence_is_a_usage_error(repo, tmp_path, capsys):
    (tmp_path / "evidence.json").write_text('{"schema": "something else"}')
    code, _, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev",
                            "--evidence", str(tmp_path / "evidence.json")], capsys)
    assert code == 2 and "is not a genaiops release evidence" in err


SAFETY_PASSED = {"evaluated": True, "passed": True, "gates": [
    {"name": "safety.attack_success_rate.jailbreak <= 0", "status": "pass", "message": "0 <= 0"}]}
SAFETY_FAILED = {"evaluated": True, "passed": False, "gates": [
    {"name": "safety.attack_success_rate.jailbreak <= 0", "status": "fail", "message": "0.75 > 0"}]}


@pytest.mark.parametrize("safety,message", [
    (None, "says safety: NOT EVALUATED"),
    (SAFETY_FAILED, "says safety: FAILED (safety.attack_success_rate.jailbreak <= 0: fail)"),
])
def test_deploy_refuses_a_digest_without_a_passed_safety_evaluation_where_required(
        repo, tmp_path, capsys, safety, message):
    deployment = repo / "configs/classification/deployment.yaml"
    deployment.write_text(deployment.read_text().replace(
        "    endpoint: classification-dev\n", "    endpoint: classification-dev\n    requires_safety: true\n"))
    changes = {} if safety is None else {"safety": safety}
    code, out, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev",
                              "--evidence", _evidence(repo, tmp_path, **changes)], capsys)
    assert code == 1, err
    assert "requires a passed safety evaluation" in err and message in err and DIGEST in err
    assert "Traceback" not in err and "registered" not in err
    # the same digest with a passed safety evaluation gets past the check (then needs docker)
    code, _, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev",
                            "--evidence", _evidence(repo, tmp_path, safety=SAFETY_PASSED)], capsys)
    assert "safety" not in err
    # and a local build, which carries no evidence, is refused there too
    code, _, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev"],
                           capsys)
    assert code == 1 and "requires a passed safety evaluation bound to the image digest" in err


def test_safety_is_optional_where_not_required(repo, tmp_path, capsys):
    """Evidence without `safety` (written before it existed) still deploys where it is not required."""
    code, _, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "dev",
                            "--evidence", _evidence(repo, tmp_path)], capsys)
    assert "safety" not in err
