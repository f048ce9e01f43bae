"""The approval gate and the audit chain it lives in: bound to artifact digest + use case +
environment, expiring, rejections final, one HMAC chain whose head is anchored outside the state
folder (deleting, truncating or reordering records is detected), a key that is never silently
made; and the Azure DevOps approval source seam. (The Azure DevOps REST check itself: test_ado.py.)"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from deploy_helpers import copy_use_case, run_cli

from genaiops.deploy.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    AzureDevOpsApprovals,
    record_decision,
    require_approval,
)
from genaiops.deploy.audit import AuditKeyError, ChainHead, TamperedLog, audit_log
from genaiops.errors import UsageError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64

pytestmark = pytest.mark.usefixtures("trust_dir")


def _require(workspace, artifact=A, env="prod", ttl=60, now=None):
    return require_approval(workspace, use_case="classification", env=env, artifact=artifact, ttl_minutes=ttl,
                            now=now)


def _decide(workspace, decision="approved", artifact=A, env="prod", by="alice", note=""):
    return record_decision(workspace, use_case="classification", env=env, artifact=artifact,
                           decision=decision, by=by, note=note)


def _lines(path):
    return path.read_text().splitlines()


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_missing_approval_refuses_and_says_how_to_approve(workspace):
    with pytest.raises(ApprovalRefused) as info:
        _require(workspace)
    assert "there is none" in info.value.message
    assert f"genaiops approve --use-case classification --env prod --artifact {A}" in info.value.hint


def test_valid_approval_passes_and_is_one_chain_record(workspace):
    _decide(workspace, note="metrics look good")
    grant = _require(workspace)
    assert grant.by == "alice" and grant.source == "local" and grant.reference == {"seq": 0}
    events = audit_log(workspace).read()
    assert [(e["event"], e["artifact"]) for e in events] == [("approved", A)]
    assert not (workspace.root / "approvals").exists()  # approvals are not a second, separate log


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


def test_a_rejection_is_final_for_its_digest(workspace):
    _decide(workspace, decision="rejected", by="bob")
    with pytest.raises(ApprovalRefused, match="final"):
        _decide(workspace, by="mallory")  # a later approval is not even recorded
    assert [e["event"] for e in audit_log(workspace).read()] == ["rejected"]
    with pytest.raises(ApprovalRefused, match="rejected"):
        _require(workspace)
    _decide(workspace, artifact=B)  # another digest is unaffected
    assert _require(workspace, artifact=B).by == "alice"


@pytest.mark.parametrize("tamper", ["edit", "delete first", "delete last", "truncate", "reorder", "forge",
                                    "roll back"])
def test_tampered_chain_refuses(workspace, tamper):
    _decide(workspace, artifact=B, by="carol")
    _decide(workspace)
    _decide(workspace, decision="rejected", by="bob")
    path = workspace.audit_log
    lines = _lines(path)
    if tamper == "edit":  # turn the rejection into an approval
        lines[2] = lines[2].replace('"rejected"', '"approved"')
    elif tamper == "delete first":
        lines = lines[1:]
    elif tamper == "delete last":  # undo the rejection: the remaining chain is still well-formed
        lines = lines[:-1]
    elif tamper == "truncate":  # cut inside the last record
        lines[-1] = lines[-1][:40]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "forge":  # append a well-formed record with a made-up mac
        forged = json.loads(lines[2])
        forged.update(event="approved", seq=3, prev=forged["mac"], mac="0" * 64)
        lines.append(json.dumps(forged))
    else:  # replace the log with the copy from before the rejection
        lines = lines[:2]
    _write(path, lines)
    with pytest.raises(TamperedLog) as info:
        _require(workspace)
    assert str(path) in info.value.message
    with pytest.raises(TamperedLog):  # nor can anything be added to it
        _decide(workspace, artifact=B, by="dave")


def test_a_deleted_log_is_detected_too(workspace):
    _decide(workspace)
    workspace.audit_log.unlink()
    with pytest.raises(TamperedLog, match="is empty, but its anchor .* records seq 0"):
        _require(workspace)


def test_an_edited_anchor_is_detected(workspace):
    _decide(workspace)
    _decide(workspace, decision="rejected", by="bob")
    anchor = json.loads(workspace.audit_anchor_file.read_text())
    anchor.update(seq=0, mac=json.loads(_lines(workspace.audit_log)[0])["mac"])
    workspace.audit_anchor_file.write_text(json.dumps(anchor))
    _write(workspace.audit_log, _lines(workspace.audit_log)[:1])
    with pytest.raises(TamperedLog, match="anchor .* does not verify"):
        _require(workspace)


def test_the_anchor_lives_outside_the_state_folder(workspace, trust_dir):
    _decide(workspace)
    anchor = workspace.audit_anchor_file
    assert anchor.is_file() and trust_dir in anchor.parents
    assert workspace.root not in anchor.parents and workspace.root not in workspace.audit_key_file.parents


def test_an_unanchored_chain_is_refused_until_adopted(workspace, capsys):
    (workspace.repo_root / "configs").mkdir()
    _decide(workspace)
    workspace.audit_anchor_file.unlink()  # e.g. a state folder copied from another machine
    with pytest.raises(TamperedLog, match="no anchor") as info:
        _require(workspace)
    assert "genaiops audit verify --adopt" in info.value.hint
    code, out, err = run_cli(["--repo", str(workspace.repo_root), "audit", "verify", "--adopt"], capsys)
    assert code == 0 and "anchored" in out, err
    assert _require(workspace).by == "alice"


def test_a_head_kept_by_the_approver_proves_the_chain_later(workspace, capsys):
    (workspace.repo_root / "configs").mkdir()
    record = _decide(workspace)
    head = f"{record['seq']}:{record['mac']}"
    _decide(workspace, artifact=B)
    code, out, _ = run_cli(["--repo", str(workspace.repo_root), "audit", "verify", "--head", head,
                            "--json"], capsys)
    assert code == 0 and json.loads(out)["records"] == 2
    code, _, err = run_cli(["--repo", str(workspace.repo_root), "audit", "verify", "--head",
                            f"5:{record['mac']}"], capsys)
    assert code == 1 and "the approval record records seq 5" in err


def test_bad_digest_is_a_usage_error(workspace):
    with pytest.raises(UsageError, match="not an image digest"):
        _decide(workspace, artifact="latest")


# --- the key --------------------------------------------------------------------------------------

def test_a_missing_key_is_an_error_with_the_fix_never_a_new_key(workspace):
    _decide(workspace)
    workspace.audit_key_file.unlink()
    with pytest.raises(AuditKeyError) as info:
        _require(workspace)
    assert "no audit key" in info.value.message and "line 1" not in info.value.message
    assert "restore it" in info.value.hint and str(workspace.audit_key_file) in info.value.hint
    assert not workspace.audit_key_file.exists()


def test_a_first_use_without_key_says_how_to_make_one(workspace):
    workspace.audit_key_file.unlink()
    with pytest.raises(AuditKeyError) as info:
        _decide(workspace)
    assert "genaiops audit init" in info.value.hint and "GENAIOPS_AUDIT_KEY" in info.value.hint
    assert not workspace.audit_key_file.exists() and not workspace.audit_log.exists()


@pytest.mark.parametrize("content,mode,match", [
    ("", 0o600, "is empty"),
    ("   \n", 0o600, "is empty"),
    ("short", 0o600, "too short"),
    ("k" * 64, 0o644, "readable by others"),
])
def test_unusable_key_files_are_refused(workspace, content, mode, match):
    workspace.audit_key_file.write_text(content)
    os.chmod(workspace.audit_key_file, mode)
    with pytest.raises(AuditKeyError, match=match):
        _decide(workspace)


@pytest.mark.parametrize("value,match", [("", "set but empty"), ("$(GENAIOPS_AUDIT_KEY)", "not defined"),
                                         ("abc", "too short")])
def test_unusable_key_variables_are_refused(workspace, monkeypatch, value, match):
    monkeypatch.setenv("GENAIOPS_AUDIT_KEY", value)
    with pytest.raises(AuditKeyError, match=match):
        _decide(workspace)


def test_a_key_inside_the_state_folder_is_refused(workspace, monkeypatch):
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(workspace.root / "keys"))
    with pytest.raises(AuditKeyError, match="inside the state folder"):
        _decide(workspace)


def test_the_old_key_inside_the_state_folder_is_not_used(workspace):
    workspace.audit_key_file.unlink()
    workspace.legacy_audit_key_file.parent.mkdir(parents=True)
    workspace.legacy_audit_key_file.write_text("k" * 64)
    with pytest.raises(AuditKeyError) as info:
        _decide(workspace)
    assert "mv " + str(workspace.legacy_audit_key_file) in info.value.hint


def test_audit_init_never_replaces_a_key(workspace, capsys):
    (workspace.repo_root / "configs").mkdir()
    before = workspace.audit_key_file.read_text()
    code, _, err = run_cli(["--repo", str(workspace.repo_root), "audit", "init"], capsys)
    assert code == 2 and "already exists" in err
    assert workspace.audit_key_file.read_text() == before
    assert oct(workspace.audit_key_file.stat().st_mode & 0o777) == "0o600"


# --- the approval source seam (Azure DevOps) -------------------------------------------------------

class _Client:
    def __init__(self, **approved):
        at = datetime.now(timezone.utc).isoformat()
        self.approved = {"source": "azure_devops", "run_id": 42, "approval_ids": ["x"], "by": "Dana",
                         "at": at, "artifact": A, **approved}

    def verify_run_approved(self):
        return self.approved


def _ado_grant(workspace, **approved):
    log = audit_log(workspace)
    return AzureDevOpsApprovals(client=_Client(**approved)).grant(
        ApprovalRequest("classification", "prod", A), log.read(require_anchor=False))


def test_ado_grant_names_the_run_and_refuses_another_digest(workspace):
    grant = _ado_grant(workspace)
    assert grant.as_ref() == {"source": "azure_devops", "by": "Dana", "at": grant.at, "run_id": 42,
                              "approval_ids": ["x"]}
    with pytest.raises(ApprovalRefused, match="wrong digest"):
        _ado_grant(workspace, artifact=B)


def test_ado_approval_does_not_undo_a_local_rejection(workspace):
    _decide(workspace, decision="rejected", by="bob")
    with pytest.raises(ApprovalRefused, match="final"):
        _ado_grant(workspace)


def test_a_pipeline_head_vouches_for_an_unanchored_chain_and_catches_removal(workspace):
    _decide(workspace)
    second = _decide(workspace, artifact=B)
    workspace.audit_anchor_file.unlink()  # a fresh agent: no local anchor; the pipeline keeps the head
    with pytest.raises(TamperedLog, match="removed"):
        audit_log(workspace).vouch(ChainHead(5, second["mac"]))
    grant = _ado_grant(workspace, head=f"{second['seq']}:{second['mac']}")
    log = audit_log(workspace)
    assert len(log.vouch(grant.head)) == 2
    log.append({"event": "deployed", "use_case": "classification", "env": "prod", "ok": True})
    _write(workspace.audit_log, _lines(workspace.audit_log)[:2])  # drop the deployment record
    with pytest.raises(TamperedLog, match="records were removed"):
        audit_log(workspace).read()  # the append anchored the chain again


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_approve_shows_summary_and_diff_and_reject_blocks(tmp_path, workspace, capsys, monkeypatch):
    root = copy_use_case(tmp_path / "repo", "classification")
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "GENAIOPS_IMAGE_REGISTRY"):
        monkeypatch.setenv(name, "x")  # prod's Azure settings: required to load the prod environment
    summary_md = workspace.best_pointer("classification").with_name("summary.md")
    summary_md.parent.mkdir(parents=True)  # naming a workspace path creates no folder
    summary_md.write_text("# accuracy 0.93 (gate >= 0.8: passed)\n")
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "prod",
                              "--artifact", A, "--by", "alice", "--note", "ok"], capsys)
    assert code == 0, err
    assert "accuracy 0.93" in out and "(nothing)" in out and A in out and "chain head: 0:" in out
    code, out, err = run_cli(["--repo", str(root), "reject", "-u", "classification", "-e", "prod",
                              "--artifact", A, "--by", "bob", "--json"], capsys)
    assert code == 0 and json.loads(out)["record"]["event"] == "rejected"
    with pytest.raises(ApprovalRefused, match="rejected"):
        _require(workspace)
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "prod",
                              "--artifact", A, "--by", "mallory"], capsys)
    assert code == 1 and "final" in err
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "nowhere",
                              "--artifact", A, "--by", "x"], capsys)
    assert code == 2 and "environment 'nowhere'" in err and "Traceback" not in err
    code, out, err = run_cli(["--repo", str(root), "approve", "-u", "classification", "-e", "prod",
                              "--artifact", "sha256:123", "--by", "x"], capsys)
    assert code == 2 and "not an image digest" in err


@pytest.mark.parametrize("approved,match", [
    ({"artifact": None}, "names no digest"),
    ({"by": ""}, "does not say who approved"),
    ({"at": None}, "does not say when it was given"),
    ({"at": "2020-01-01T00:00:00.1234567Z"}, "expired .valid 60 minutes."),
])
def test_ado_grant_needs_who_and_a_fresh_when(workspace, approved, match):
    """Issue 21.3/21.6: every approval source names its approver and is held to approval_ttl_minutes."""
    with pytest.raises(ApprovalRefused, match=match):
        _ado_grant(workspace, **approved)
