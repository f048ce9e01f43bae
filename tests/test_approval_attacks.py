"""The approval and audit attacks, reproduced through the CLI on real files: someone who can edit the
state folder (but not the trust folder outside it) tries to undo a rejection, to have a tampered
audit log noticed only after the deploy, or to make genaiops sign with a fresh key. Every refusal
happens before anything is staged, built or started; Docker is not needed for that."""

from __future__ import annotations

import json
import os

import pytest
from deploy_helpers import copy_use_case, run_cli

from genaiops.workspace import Workspace

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
KEY = "0123456789abcdef" * 4  # provisioned as CI does: a secret variable


@pytest.fixture
def world(tmp_path, monkeypatch):
    root = copy_use_case(tmp_path / "repo", "classification")
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("GENAIOPS_AUDIT_KEY", KEY)
    return {"root": root, "state": tmp_path / "state", "trust": tmp_path / "trust"}


def _cli(world, capsys, *argv):
    return run_cli(["--repo", str(world["root"]), *argv], capsys)


def _decide(world, capsys, decision, artifact=A, env="prod", by="alice"):
    code, out, err = _cli(world, capsys, decision, "-u", "classification", "-e", env, "--artifact", artifact,
                          "--by", by)
    assert code == 0, out + err


def _logs_holding(world, text: str) -> list:
    """The state files whose lines hold `text` (wherever the version under test keeps them)."""
    paths = [p for p in world["state"].rglob("*.jsonl") if text in p.read_text()]
    assert paths
    return paths


def _nothing_staged(world) -> bool:
    return not (world["state"] / "deploy" / "classification" / "staged").exists()


def test_deleting_the_rejection_does_not_undo_it(world, capsys):
    _decide(world, capsys, "approve")
    _decide(world, capsys, "reject", by="bob")
    paths = _logs_holding(world, '"rejected"')
    for path in paths:  # the remaining records still chain correctly
        path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    code, out, err = _cli(world, capsys, "run", "deploy", "-u", "classification", "-e", "prod")
    assert code == 1, out + err
    assert "records were removed" in err and any(str(path) in err for path in paths)
    assert _nothing_staged(world)
    code, _, err = _cli(world, capsys, "approve", "-u", "classification", "-e", "prod", "--artifact", A,
                        "--by", "mallory")
    assert code == 1 and "records were removed" in err


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_a_tampered_audit_log_stops_the_deploy_before_anything_runs(world, capsys, tamper):
    _decide(world, capsys, "approve", env="staging")
    _decide(world, capsys, "approve", artifact=B, env="prod", by="carol")
    path = world["state"] / "audit" / "audit.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    if tamper == "edit":
        lines[0] = lines[0].replace('"alice"', '"mallory"')
    elif tamper == "delete":
        lines = lines[:1]
    else:
        lines.reverse()
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _cli(world, capsys, "run", "deploy", "-u", "classification", "-e", "dev")
    assert code == 1, out + err
    assert str(path) in err and "Traceback" not in err
    assert _nothing_staged(world)
    # the refusal is an audit event: the chain cannot take it, so the trust folder's incident log does
    incidents = [json.loads(line) for p in world["trust"].rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert [(i["event"], i["env"]) for i in incidents] == [("deploy_refused", "dev")]
    assert str(path) in incidents[0]["reason"]


def test_a_missing_key_is_an_error_with_the_fix_not_a_new_key(world, capsys, monkeypatch):
    _decide(world, capsys, "approve")
    monkeypatch.delenv("GENAIOPS_AUDIT_KEY")
    code, out, err = _cli(world, capsys, "approve", "-u", "classification", "-e", "prod", "--artifact", B,
                          "--by", "carol")
    assert code == 2, out + err
    assert "no audit key" in err and "line 1" not in err and "GENAIOPS_AUDIT_KEY" in err
    assert not Workspace.for_repo(world["root"]).audit_key_file.exists()
    assert not [p for p in world["state"].rglob("*.key")]


def test_an_empty_key_file_is_refused(world, capsys, monkeypatch):
    monkeypatch.delenv("GENAIOPS_AUDIT_KEY")
    key_file = Workspace.for_repo(world["root"]).audit_key_file
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("")
    os.chmod(key_file, 0o600)
    code, out, err = _cli(world, capsys, "approve", "-u", "classification", "-e", "prod", "--artifact", A,
                          "--by", "alice")
    assert code == 2, out + err
    assert "is empty" in err
    assert not (world["state"] / "audit" / "audit.jsonl").exists()
