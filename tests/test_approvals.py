"""The approval gate: bound to artifact digest + use case + environment, expiring, rejectable,
tamper-evident. (The Azure DevOps approval check: test_ado.py.)"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from deploy_helpers import copy_use_case, run_cli

from genaiops.deploy.approvals import ApprovalRefused, record_decision, require_approval
from genaiops.deploy.audit import TamperedLog, audit_log
from genaiops.errors import UsageError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def _require(workspace, artifact=A, env="prod", ttl=60, now=None):
    return require_approval(workspace, use_case="classification", env=env, artifact=artifact, ttl_minutes=ttl,
                            now=now)


def _decide(workspace, decision="approved", artifact=A, env="prod", by="alice", note=""):
    return record_decision(workspace, use_case="classification", env=env, artifact=artifact,
                           decision=decision, by=by, note=note)


def test_missing_approval_refuses_and_says_how_to_approve(workspace):
    with pytest.raises(ApprovalRefused) as info:
        _require(workspace)
    assert "there is none" in info.value.message
    assert f"genaiops approve --use-case classification --env prod --artifact {A}" in info.value.hint


def test_valid_approval_passes_and_is_audited(workspace):
    _decide(workspace, note="metrics look good")
    record = _require(workspace)
    assert record["by"] == "alice" and record["artifact"] == A
    events = audit_log(workspace).read()
    assert [e["event"] for e in events] == ["approved"]


def test_wrong_digest_refuses(workspace):
    _decide(workspace, artifact=B)
    with pytest.raises(ApprovalRefused) as info:
        _require(workspace, artifact=A)
    assert "wrong digest" in info.value.message and "sha256:bbbb" in info.value.message


def test_approval_for_another_environment_does_not_count(workspace):
    _decide(workspace, env="staging")
    with pytest.raises(ApprovalRefused, match="there is none"):
        _require(workspace, env="prod")


def test_expired_approval_refuses(workspace):
    _decide(workspace)
    later = datetime.now(timezone.utc) + timedelta(minutes=61)
    with pytest.raises(ApprovalRefused, match="expired"):
        _require(workspace, now=later)
    assert _require(workspace, now=datetime.now(timezone.utc) + timedelta(minutes=59))


def test_rejection_refuses_even_after_an_earlier_approval(workspace):
    _decide(workspace)
    _decide(workspace, decision="rejected", by="bob", note="hallucinates refunds")
    with pytest.raises(ApprovalRefused) as info:
        _require(workspace)
    assert "rejected" in info.value.message and "bob" in info.value.message
    assert "hallucinates refunds" in info.value.message


@pytest.mark.parametrize("tamper", ["edit", "delete", "forge"])
def test_tampered_log_refuses(workspace, tamper):
    _decide(workspace, artifact=B, by="carol")
    _decide(workspace, decision="rejected", by="bob")
    path = workspace.approvals_log("classification", "prod")
    lines = path.read_text().splitlines()
    if tamper == "edit":  # turn the rejection into an approval
        lines[1] = lines[1].replace('"rejected"', '"approved"')
    elif tamper == "delete":  # drop the first record: the chain no longer starts at genesis
        lines = lines[1:]
    else:  # append a well-formed record with a made-up mac
        forged = json.loads(lines[1])
        forged.update(decision="approved", seq=2, prev=forged["mac"], mac="0" * 64)
        lines.append(json.dumps(forged))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TamperedLog) as info:
        _require(workspace)
    assert "integrity check" in info.value.message and str(path) in info.value.message


def test_bad_digest_is_a_usage_error(workspace):
    with pytest.raises(UsageError, match="not an image digest"):
        _decide(workspace, artifact="latest")


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_approve_shows_summary_and_diff_and_reject_blocks(tmp_path, workspace, capsys, monkeypatch):
    root = copy_use_case(tmp_path / "repo", "classification")
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "GENAIOPS_IMAGE_REGISTRY"):
        monkeypatch.setenv(name, "x")  # prod's Azure settings: required to load the prod environment
    workspace.best_pointer("classification").with_name("summary.md").write_text("# accuracy 0.93 (gate >= 0.8: passed)\n")
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "prod",
                              "--artifact", A, "--by", "alice", "--note", "ok"], capsys)
    assert code == 0, err
    assert "accuracy 0.93" in out and "(nothing)" in out and A in out
    code, out, err = run_cli(["--repo", str(root), "reject", "-u", "classification", "-e", "prod",
                              "--artifact", A, "--by", "bob", "--json"], capsys)
    assert code == 0 and json.loads(out)["record"]["decision"] == "rejected"
    with pytest.raises(ApprovalRefused, match="rejected"):
        _require(workspace)
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "nowhere",
                              "--artifact", A, "--by", "x"], capsys)
    assert code == 2 and "environment 'nowhere'" in err and "Traceback" not in err
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "prod",
                              "--artifact", "sha256:123", "--by", "x"], capsys)
    assert code == 2 and "not an image digest" in err
