"""The Azure DevOps approval check of a release deploy, against the loopback Azure DevOps fake (its
REST API as genaiops calls it with httpx): the approval stage's ManualValidation record names the
digest (bound to the record, not to a pipeline output), the deploy stage's environment approval
says who approved - a listed release approver, neither the run's requester nor the change's author -
and when, and the approval source enforces the TTL. Everything missing, pending, rejected or
unreadable refuses.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fakes.ado import PROJECT, FakeAzureDevOps

from genaiops.deploy.ado import AdoApprovalRefused, AdoApprovalsClient, AdoRun, change_authors
from genaiops.errors import UsageError

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
AUTHOR = "dana.dev@contoso.com"
APPROVER = "riley.release@contoso.com"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def ado():
    with FakeAzureDevOps() as fake:
        yield fake


def _record(run, parent, kind, name, **fields):
    record = {"id": fields.pop("id", str(uuid.uuid4())), "parentId": parent, "type": kind, "name": name,
              "state": "completed", "result": "succeeded", **fields}
    run.timeline.append(record)
    return record


def _at(minutes_ago: int = 5) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", ".1234567Z")


def _release(ado, run, uc="classification", validation=("completed", "succeeded"), shown=DIGEST,
             approval="approved", by=APPROVER, minutes_ago=5):
    """Approve_<uc>: a ManualValidation named with the digest (as the service records the display
    name); Prod_<uc>: the environment's approval check (`approval`: its status, None: no check)."""
    approve = _record(run, None, "Stage", f"Approve {uc}", identifier=f"Approve_{uc}")
    job = _record(run, approve["id"], "Job", "Approve", identifier=f"Approve_{uc}.Approve")
    if validation:
        state, result = validation
        _record(run, job["id"], "Task", f"Approve image {shown}", task={"name": "ManualValidation", "version": "1.1.0"},
                state=state, result=result, finishTime=_at(minutes_ago))
    deploy = _record(run, None, "Stage", f"Release {uc}", identifier=f"Prod_{uc}", state="inProgress", result=None)
    if approval:
        approval_id = f"appr-{uc}-{run.id}"
        checkpoint = _record(run, deploy["id"], "Checkpoint", "Checkpoint")
        _record(run, checkpoint["id"], "Checkpoint.Approval", "Checkpoint.Approval", id=approval_id)
        ado.approvals[approval_id] = {"id": approval_id, "status": approval, "steps": [
            {"status": approval, "assignedApprover": {"displayName": "[GenAI Ops]\\Release Approvers"},
             "actualApprover": {"uniqueName": by, "displayName": by.split("@")[0]},
             "lastModifiedOn": _at(minutes_ago)}]}
    _record(run, deploy["id"], "Job", "Deploy", identifier=f"Prod_{uc}.Deploy", state="inProgress", result=None)


def _client(ado, run, uc="classification", token=None, approvers=(APPROVER,), authors=(AUTHOR,)):
    return AdoApprovalsClient(AdoRun(ado.collection_uri, PROJECT, run.id, f"Prod_{uc}", token or run.token,
                                     f"Approve_{uc}", tuple(approvers), tuple(authors)))


def _run(ado, requested_for=AUTHOR):
    return ado.new_run("refs/heads/main", "IndividualCI", requested_for, "c" * 40)


def test_the_approval_record_names_the_digest_and_the_approver(ado):
    run = _run(ado)
    _release(ado, run)
    result = _client(ado, run).verify_deploy_approved(DIGEST)
    assert result["artifact"] == DIGEST and result["by"] == APPROVER and result["approval_stage"] == "Approve_classification"
    assert result["manual_validations"] == 1 and result["approval_ids"] == [f"appr-classification-{run.id}"]
    [timeline] = [r for r in ado.requests if r["path"].endswith("/timeline")]
    assert timeline["headers"]["Authorization"] == f"Bearer {run.token}" and timeline["query"]["api-version"] == "7.1"
    assert [r for r in ado.requests if "/approvals/" in r["path"]][0]["query"]["$expand"] == "steps"


def test_another_release_still_waiting_does_not_block_this_one(ado):
    run = _run(ado)
    _release(ado, run, "qa", validation=("inProgress", None), approval=None)
    _release(ado, run, "classification")
    assert _client(ado, run).verify_deploy_approved(DIGEST)["stage"] == "Prod_classification"
    with pytest.raises(AdoApprovalRefused, match="stage Approve_qa: manual validation .* is inProgress"):
        _client(ado, run, "qa").verify_deploy_approved(DIGEST)


@pytest.mark.parametrize("changes,match", [
    ({"validation": ("completed", "failed")}, "is failed"),
    ({"validation": ("completed", "canceled")}, "is canceled"),
    ({"validation": None}, "has no manual validation showing the digest"),
    ({"approval": "pending"}, "environment approval appr-classification-.* is pending"),
    ({"approval": None}, "has no environment approval: Azure DevOps records who approved only there"),
])
def test_an_unapproved_release_refuses(ado, changes, match):
    run = _run(ado)
    _release(ado, run, **changes)
    with pytest.raises(AdoApprovalRefused, match=match):
        _client(ado, run).verify_deploy_approved(DIGEST)


def test_the_digest_comes_from_the_approval_record_not_from_a_pipeline_output(ado):
    """Issue 21.7: the record the approver acted on names the digest; another digest refuses."""
    run = _run(ado)
    _release(ado, run, shown=OTHER)
    with pytest.raises(AdoApprovalRefused, match=f"showed digest {OTHER}, but this deploy is of {DIGEST}"):
        _client(ado, run).verify_deploy_approved(DIGEST)
    unnamed = _run(ado)
    _release(ado, unnamed, shown="the image")
    with pytest.raises(AdoApprovalRefused, match="names 0 image digests in its recorded name"):
        _client(ado, unnamed).verify_deploy_approved(DIGEST)


@pytest.mark.parametrize("by,requested_for,match", [
    ("mallory@contoso.com", AUTHOR, "mallory@contoso.com, who is not one of the release approvers"),
    (APPROVER, APPROVER, "who requested this run or authored the change"),
    (AUTHOR, "ops@contoso.com", "who requested this run or authored the change"),
])
def test_only_a_release_approver_other_than_requester_and_author_may_approve(ado, by, requested_for, match):
    """Issue 21.3: the approver is recorded and checked: listed, not the requester, not the author."""
    run = _run(ado, requested_for)
    _release(ado, run, by=by)
    with pytest.raises(AdoApprovalRefused, match=match):
        _client(ado, run, approvers=(APPROVER, AUTHOR)).verify_deploy_approved(DIGEST)


def test_a_group_listed_as_approvers_admits_the_member_azure_devops_let_approve(ado):
    run = _run(ado)
    _release(ado, run)
    result = _client(ado, run, approvers=("[GenAI Ops]\\Release Approvers",)).verify_deploy_approved(DIGEST)
    assert result["by"] == APPROVER


def test_no_configured_approvers_is_a_usage_error(ado):
    run = _run(ado)
    _release(ado, run)
    with pytest.raises(UsageError, match="no release approvers configured"):
        _client(ado, run, approvers=()).verify_deploy_approved(DIGEST)
    env = {"SYSTEM_COLLECTIONURI": "x", "SYSTEM_TEAMPROJECT": "p", "BUILD_BUILDID": "7",
           "SYSTEM_STAGENAME": "Prod_qa", "SYSTEM_ACCESSTOKEN": "t"}
    for value in ("", " , ", "$(releaseApprovers)"):
        with pytest.raises(UsageError, match="GENAIOPS_RELEASE_APPROVERS"):
            AdoRun.from_env({**env, "GENAIOPS_RELEASE_APPROVERS": value})


def test_the_approval_source_enforces_digest_identity_and_ttl(ado, workspace):
    """Issue 21.6: an Azure DevOps approval older than approval_ttl_minutes has expired (a 'rerun
    failed jobs' days later needs a new approval); the grant records who approved and when."""
    from genaiops.deploy.approvals import ApprovalRefused, ApprovalRequest, AzureDevOpsApprovals

    run = _run(ado)
    _release(ado, run, minutes_ago=5)
    request = ApprovalRequest("classification", "prod", DIGEST, ttl_minutes=60)
    grant = AzureDevOpsApprovals(client=_client(ado, run)).grant(request, [], now=NOW)
    assert grant.source == "azure_devops" and grant.by == APPROVER and grant.at.startswith("2026-01-01T11:55")
    assert grant.as_ref()["run_id"] == run.id and grant.as_ref()["approval_stage"] == "Approve_classification"
    with pytest.raises(ApprovalRefused, match="expired .valid 60 minutes."):
        AzureDevOpsApprovals(client=_client(ado, run)).grant(request, [], now=NOW + timedelta(days=2))
    with pytest.raises(ApprovalRefused, match="wrong digest"):
        AzureDevOpsApprovals(client=_client(ado, run)).grant(ApprovalRequest("classification", "prod", OTHER), [],
                                                             now=NOW)


def test_unreadable_answers_refuse(ado):
    run = _run(ado)
    _release(ado, run)
    with pytest.raises(AdoApprovalRefused, match="HTTP 401") as info:
        _client(ado, run, token="wrong").verify_deploy_approved(DIGEST)
    assert "Build Service" in info.value.hint
    with pytest.raises(AdoApprovalRefused, match="0 timeline stages named 'Approve_x'"):
        _client(ado, run, "x").verify_deploy_approved(DIGEST)
    ado.stop()
    with pytest.raises(AdoApprovalRefused, match="cannot reach Azure DevOps"):
        _client(ado, run).verify_deploy_approved(DIGEST)


def test_run_settings_come_from_the_agent_and_the_checkout(tmp_path):
    with pytest.raises(UsageError, match="SYSTEM_STAGENAME, SYSTEM_ACCESSTOKEN") as info:
        AdoRun.from_env({"SYSTEM_COLLECTIONURI": "x", "SYSTEM_TEAMPROJECT": "p", "BUILD_BUILDID": "1"})
    assert "SYSTEM_ACCESSTOKEN: $(System.AccessToken)" in info.value.hint
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "D", "GIT_AUTHOR_EMAIL": AUTHOR, "GIT_COMMITTER_NAME": "M",
               "GIT_COMMITTER_EMAIL": "Merger@contoso.com"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "A"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, env=git_env, capture_output=True)
    run = AdoRun.from_env({"SYSTEM_COLLECTIONURI": "x", "SYSTEM_TEAMPROJECT": "p", "BUILD_BUILDID": "7",
                           "SYSTEM_STAGENAME": "Prod_qa", "SYSTEM_ACCESSTOKEN": "t", "GENAIOPS_APPROVAL_STAGE": "Approve_qa",
                           "GENAIOPS_RELEASE_APPROVERS": f"{APPROVER}, [GenAI Ops]\\Release Approvers"}, repo=tmp_path)
    assert (run.run_id, run.stage, run.approval_stage) == (7, "Prod_qa", "Approve_qa")
    assert run.approvers == (APPROVER, "[GenAI Ops]\\Release Approvers")
    assert run.authors == (AUTHOR, "merger@contoso.com") == change_authors(tmp_path)
    with pytest.raises(AdoApprovalRefused, match="cannot tell who authored the change"):
        change_authors(tmp_path / "nowhere")
