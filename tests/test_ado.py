"""The Azure DevOps approval check of a release deploy, against the loopback Azure DevOps fake (its
REST API as genaiops calls it with httpx): only the *current stage's* approvals count - a
ManualValidation task or an environment approval check below it - and the digest the approval
showed must be the digest being deployed. Everything missing, pending, rejected or unreadable refuses.
"""

from __future__ import annotations

import uuid

import pytest
from fakes.ado import PROJECT, FakeAzureDevOps

from genaiops.deploy.ado import AdoApprovalRefused, AdoApprovalsClient, AdoRun
from genaiops.errors import UsageError

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
def ado():
    with FakeAzureDevOps() as fake:
        yield fake


def _record(run, parent, kind, name, **fields):
    record = {"id": fields.pop("id", str(uuid.uuid4())), "parentId": parent, "type": kind, "name": name,
              "state": "completed", "result": "succeeded", **fields}
    run.timeline.append(record)
    return record


def _stage(run, name, validation=None, checkpoint_approval=None):
    """A stage with an Approve job (ManualValidation in state/result `validation`) and/or an
    environment approval check (`checkpoint_approval`: the approval's id)."""
    stage = _record(run, None, "Stage", f"Release {name}", identifier=name, state="inProgress", result=None)
    if validation:
        job = _record(run, stage["id"], "Job", "Approve", identifier=f"{name}.Approve")
        state, result = validation
        _record(run, job["id"], "Task", "Approve image", task={"name": "ManualValidation", "version": "1.1.0"},
                state=state, result=result)
    if checkpoint_approval:
        checkpoint = _record(run, stage["id"], "Checkpoint", "Checkpoint")
        _record(run, checkpoint["id"], "Checkpoint.Approval", "Checkpoint.Approval", id=checkpoint_approval)
    _record(run, stage["id"], "Job", "Deploy", identifier=f"{name}.Deploy", state="inProgress", result=None)
    return stage


def _client(ado, run, stage="Prod_classification", digest=DIGEST, token=None) -> AdoApprovalsClient:
    return AdoApprovalsClient(AdoRun(ado.collection_uri, PROJECT, run.id, stage, token or run.token, digest))


def _run(ado):
    return ado.new_run("refs/heads/main", "IndividualCI", "dana.dev@contoso.com", "c" * 40)


def test_the_stage_s_manual_validation_and_the_shown_digest_pass(ado):
    run = _run(ado)
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    result = _client(ado, run).verify_deploy_approved(DIGEST)
    assert result["stage"] == "Prod_classification" and result["manual_validations"] == 1
    assert result["artifact"] == DIGEST
    [timeline] = [r for r in ado.requests if r["path"].endswith("/timeline")]
    assert timeline["headers"]["Authorization"] == f"Bearer {run.token}" and timeline["query"]["api-version"] == "7.1"


def test_another_stage_still_waiting_does_not_block_this_one(ado):
    run = _run(ado)
    _stage(run, "Prod_qa", validation=("inProgress", None))  # qa's release waits for its approver
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    assert _client(ado, run).verify_deploy_approved(DIGEST)["stage"] == "Prod_classification"
    with pytest.raises(AdoApprovalRefused, match="stage Prod_qa: manual validation .* is inProgress"):
        _client(ado, run, stage="Prod_qa").verify_deploy_approved(DIGEST)


@pytest.mark.parametrize("validation,match", [
    (("completed", "failed"), "is failed"),
    (("completed", "canceled"), "is canceled"),
    (("inProgress", None), "is inProgress"),
    (None, "has no approval"),
])
def test_this_stage_unapproved_refuses(ado, validation, match):
    run = _run(ado)
    _stage(run, "Prod_classification", validation=validation)
    with pytest.raises(AdoApprovalRefused, match=match):
        _client(ado, run).verify_deploy_approved(DIGEST)


def test_environment_approval_check_is_read_by_its_id(ado):
    run = _run(ado)
    _stage(run, "Prod_classification", checkpoint_approval="appr-1")
    ado.approvals["appr-1"] = {"id": "appr-1", "status": "pending", "steps": []}
    with pytest.raises(AdoApprovalRefused, match="environment approval appr-1 is pending"):
        _client(ado, run).verify_deploy_approved(DIGEST)
    ado.approvals["appr-1"] = {"id": "appr-1", "status": "approved",
                               "steps": [{"status": "approved", "actualApprover": {"displayName": "Riley"}}]}
    result = _client(ado, run).verify_deploy_approved(DIGEST)
    assert result["approval_ids"] == ["appr-1"] and result["by"] == "Riley"
    [approval] = [r for r in ado.requests if "/approvals/" in r["path"]][-1:]
    assert approval["query"]["$expand"] == "steps"


def test_an_approval_of_another_digest_refuses(ado):
    run = _run(ado)
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    with pytest.raises(AdoApprovalRefused, match=f"showed digest {OTHER}, but this deploy is of {DIGEST}"):
        _client(ado, run, digest=OTHER).verify_deploy_approved(DIGEST)
    # the approval source seam: the digest is returned as `artifact` and compared there
    assert _client(ado, run, digest=OTHER).verify_run_approved()["artifact"] == OTHER


def test_an_approval_that_names_no_digest_refuses_before_asking_azure_devops(ado):
    run = _run(ado)
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    with pytest.raises(AdoApprovalRefused, match="names no digest .GENAIOPS_APPROVED_DIGEST is not set"):
        _client(ado, run, digest="").verify_run_approved()
    assert ado.requests == []


def test_the_approval_source_refuses_a_digest_the_approver_did_not_see(ado, workspace):
    from genaiops.deploy.approvals import ApprovalRefused, ApprovalRequest, AzureDevOpsApprovals

    run = _run(ado)
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    source = AzureDevOpsApprovals(client=_client(ado, run, digest=OTHER))
    with pytest.raises(ApprovalRefused, match="wrong digest"):
        source.grant(ApprovalRequest("classification", "prod", DIGEST), [])
    grant = AzureDevOpsApprovals(client=_client(ado, run)).grant(ApprovalRequest("classification", "prod", DIGEST), [])
    assert grant.source == "azure_devops" and grant.as_ref()["run_id"] == run.id


def test_unreadable_answers_refuse(ado):
    run = _run(ado)
    _stage(run, "Prod_classification", validation=("completed", "succeeded"))
    with pytest.raises(AdoApprovalRefused, match="HTTP 401") as info:
        _client(ado, run, token="wrong").verify_deploy_approved(DIGEST)
    assert "Build Service" in info.value.hint
    with pytest.raises(AdoApprovalRefused, match="0 timeline stages named 'Prod_x'"):
        _client(ado, run, stage="Prod_x").verify_deploy_approved(DIGEST)
    ado.stop()
    with pytest.raises(AdoApprovalRefused, match="cannot reach Azure DevOps"):
        _client(ado, run).verify_deploy_approved(DIGEST)


def test_missing_pipeline_variables_are_a_usage_error():
    with pytest.raises(UsageError, match="SYSTEM_STAGENAME, SYSTEM_ACCESSTOKEN") as info:
        AdoRun.from_env({"SYSTEM_COLLECTIONURI": "x", "SYSTEM_TEAMPROJECT": "p", "BUILD_BUILDID": "1"})
    assert "SYSTEM_ACCESSTOKEN: $(System.AccessToken)" in info.value.hint
    run = AdoRun.from_env({"SYSTEM_COLLECTIONURI": "x", "SYSTEM_TEAMPROJECT": "p", "BUILD_BUILDID": "7",
                           "SYSTEM_STAGENAME": "Prod_qa", "SYSTEM_ACCESSTOKEN": "t", "GENAIOPS_APPROVED_DIGEST": DIGEST})
    assert (run.run_id, run.stage, run.approved_digest) == (7, "Prod_qa", DIGEST)
