"""The Azure Pipelines emulation itself (`pipeline_agent.py`), on small pipelines of shell steps: an
environment's checks hold for the whole stage that uses it - an Approvals check that records who
approved, and an Exclusive lock a waiting stage keeps - so the contract test can see what a stage
layout does to the releases of other use cases. No docker, no genaiops: seconds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fakes.ado import FakeAzureDevOps
from pipeline_agent import Agent, Decision, Trigger

APPROVER, AUTHOR = "riley.release@contoso.com", "dana.dev@contoso.com"


def _deploy(env: str) -> dict:
    return {"deployment": "Deploy", "environment": env, "strategy": {"runOnce": {"deploy": {"steps": [
        {"script": "echo deploying", "displayName": "deploy"}]}}}}


def _approve(digest: str = "$(digest)") -> dict:
    return {"job": "Approve", "pool": "server", "variables": {"digest": "sha256:" + "a" * 64}, "steps": [
        {"task": "ManualValidation@1", "displayName": f"Approve image {digest}",
         "inputs": {"notifyUsers": APPROVER, "approvers": APPROVER, "instructions": "ok?",
                    "allowApproversToApproveTheirOwnRuns": "false"}}]}


def _pipeline(stages: list[dict]) -> dict:
    return {"trigger": {"branches": {"include": ["main"]}}, "stages": stages}


@pytest.fixture
def agent(tmp_path):
    with FakeAzureDevOps() as ado:
        answers: dict = {}
        seen: list[tuple[str, str]] = []

        def approver(validation, call):
            seen.append((validation.stage, validation.kind))
            queue = answers.get((validation.stage, validation.kind)) or answers.get(validation.stage) or \
                [Decision("approved", APPROVER)]
            return queue[min(call, len(queue) - 1)]

        agent = Agent(origin=tmp_path, ado=ado, variable_groups={}, secret_variables=set(), service_connections={},
                      machine_env={"PATH": "/usr/bin:/bin"}, venv=Path("/nonexistent"), workdir=tmp_path / "w",
                      approver=approver, environments={"prod": {"exclusive_lock": True, "approvers": [APPROVER]}})
        agent.answers, agent.seen = answers, seen
        yield agent


def _trigger():
    return Trigger("refs/heads/main", "c" * 40, requested_for=AUTHOR)


def test_a_stage_waiting_for_its_approval_holds_the_environment_lock(agent):
    """The old layout: approval and deploy in one stage that uses `prod` - qa waits for classification."""
    agent.answers[("Prod_classification", "manual_validation")] = [Decision("defer"), Decision("approved", APPROVER)]
    result = agent.run(_pipeline([
        {"stage": "Prod_classification", "dependsOn": [], "jobs": [_approve(), {**_deploy("prod"), "dependsOn": "Approve"}]},
        {"stage": "Prod_qa", "dependsOn": [], "jobs": [_approve(), {**_deploy("prod"), "dependsOn": "Approve"}]},
    ]), _trigger())
    assert result.run.result == "succeeded"
    assert ("Prod_qa", "prod", f"{result.run.id}/Prod_classification") in result.lock_waits
    assert agent.locks == {}  # released when the stages completed


def test_approval_in_its_own_stage_leaves_the_lock_to_others_and_records_the_approver(agent):
    agent.answers["Approve_classification"] = [Decision("defer"), Decision("approved", APPROVER)]
    result = agent.run(_pipeline([
        {"stage": "Approve_classification", "dependsOn": [], "jobs": [_approve()]},
        {"stage": "Prod_classification", "dependsOn": ["Approve_classification"], "jobs": [_deploy("prod")]},
        {"stage": "Approve_qa", "dependsOn": [], "jobs": [_approve()]},
        {"stage": "Prod_qa", "dependsOn": ["Approve_qa"], "jobs": [_deploy("prod")]},
    ]), _trigger())
    assert result.run.result == "succeeded" and result.lock_waits == []
    order = [s for s, kind in agent.seen if kind == "environment"]
    assert order == ["Prod_qa", "Prod_classification"]  # qa deployed while classification waited
    tasks = [r for r in result.run.timeline if r["type"] == "Task" and r.get("task")]
    assert {t["name"] for t in tasks} == {"Approve image sha256:" + "a" * 64}  # the name as recorded
    assert all(t["finishTime"].endswith("Z") for t in tasks)
    approvals = [a for a in agent.ado.approvals.values()]
    assert len(approvals) == 2 and all(a["status"] == "approved" for a in approvals)
    assert approvals[0]["steps"][0]["actualApprover"]["uniqueName"] == APPROVER
    checkpoints = [r for r in result.run.timeline if r["type"] == "Checkpoint.Approval"]
    assert {c["id"] for c in checkpoints} == set(agent.ado.approvals)


@pytest.mark.parametrize("who", ["mallory@contoso.com", AUTHOR])
def test_an_environment_approval_only_counts_from_a_listed_approver_who_did_not_request_the_run(agent, who):
    agent.environments["prod"]["approvers"].append(AUTHOR)
    agent.environments["prod"]["approvers"].remove(APPROVER) if who == "mallory@contoso.com" else None
    agent.answers["Prod_qa"] = [Decision("approved", who)]
    result = agent.run(_pipeline([{"stage": "Prod_qa", "dependsOn": [], "jobs": [_deploy("prod")]}]), _trigger())
    assert result.stages["Prod_qa"] == "Failed" and result.run.result == "failed"
    [approval] = agent.ado.approvals.values()
    assert approval["status"] == "rejected"


def test_rerun_failed_jobs_runs_them_as_the_next_attempt_and_asks_the_environment_again(agent):
    stage = {"stage": "Prod_qa", "dependsOn": [], "jobs": [{
        "deployment": "Deploy", "environment": "prod", "strategy": {"runOnce": {"deploy": {"steps": [
            {"script": 'test "$SYSTEM_JOBATTEMPT" = 2', "displayName": "deploy"}]}}}}]}
    pipeline = _pipeline([{"stage": "Approve_qa", "dependsOn": [], "jobs": [_approve()]}, stage])
    result = agent.run(pipeline, _trigger())
    assert result.stages["Prod_qa"] == "Failed" and result.run.result == "failed"
    [validation] = [r for r in result.run.timeline if r.get("task")]
    approved_at = validation["finishTime"]
    Agent.time_passes(agent.ado, result, timedelta(days=2))
    assert validation["finishTime"] < approved_at  # what was recorded is now two days old
    agent.rerun_failed_jobs(pipeline, result)
    assert result.stages == {"Approve_qa": "Succeeded", "Prod_qa": "Succeeded"} and result.run.result == "succeeded"
    assert [kind for stage_name, kind in agent.seen] == ["manual_validation", "environment", "environment"]
    jobs = [r for r in result.run.timeline if r["type"] == "Job" and r["identifier"] == "Prod_qa.Deploy"]
    assert [j["attempt"] for j in jobs] == [2]  # the timeline shows the latest attempt
    assert len([r for r in result.run.timeline if r["type"] == "Checkpoint.Approval"]) == 1
    assert [r for r in result.run.timeline if r.get("task")] == [validation]  # the approval stage is not rerun


def test_genaiops_reads_the_emulated_records_as_it_reads_azure_devops(agent):
    """The records the emulation writes (the ManualValidation's recorded name, the environment
    approval and its approver, the run's requester) are what `deploy/ado.py` checks - the same fake
    the contract test's prod deploys ask."""
    from fakes.ado import PROJECT

    from genaiops.deploy.ado import AdoApprovalRefused, AdoApprovalsClient, AdoRun
    from genaiops.deploy.approvals import ApprovalRefused, ApprovalRequest, AzureDevOpsApprovals

    digest = "sha256:" + "a" * 64
    result = agent.run(_pipeline([
        {"stage": "Approve_qa", "dependsOn": [], "jobs": [_approve()]},
        {"stage": "Prod_qa", "dependsOn": ["Approve_qa"], "jobs": [_deploy("prod")]},
    ]), _trigger())

    def client(authors=("someone@contoso.com",)):
        return AdoApprovalsClient(AdoRun(agent.ado.collection_uri, PROJECT, result.run.id, "Prod_qa",
                                         result.run.token, "Approve_qa", (APPROVER,), authors))
    approved = client().verify_deploy_approved(digest)
    assert approved["by"] == APPROVER and approved["artifact"] == digest and approved["at"]
    grant = AzureDevOpsApprovals(client=client()).grant(ApprovalRequest("qa", "prod", digest), [])
    assert grant.by == APPROVER
    with pytest.raises(AdoApprovalRefused, match="authored the change"):
        client(authors=(APPROVER,)).verify_deploy_approved(digest)
    Agent.time_passes(agent.ado, result, timedelta(days=2))
    with pytest.raises(ApprovalRefused, match="expired"):
        AzureDevOpsApprovals(client=client()).grant(ApprovalRequest("qa", "prod", digest), [])
