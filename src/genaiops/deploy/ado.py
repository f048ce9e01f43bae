"""Azure DevOps: was *this stage* of the current run approved, and for the digest being deployed?

A release deploy job (`approval_source: azure_devops`) asks the Azure DevOps REST API, with
`System.AccessToken` mapped into the step's env (`SYSTEM_ACCESSTOKEN: $(System.AccessToken)`):

1. the run's timeline, `GET {collection}{project}/_apis/build/builds/{BUILD_BUILDID}/timeline`, and
   takes the records below the current stage (the `Stage` record whose `identifier` is
   `SYSTEM_STAGENAME`):
   - every `ManualValidation` task there must be completed with result `succeeded`;
   - every `Checkpoint.Approval` there (an approval check of the stage's environment; the record id
     is the approval id) must read `approved` from
     `GET .../_apis/pipelines/approvals/{id}?$expand=steps`.
   At least one of them must exist. Approvals of other stages - another use case's release still
   waiting - are not looked at.
2. `GENAIOPS_APPROVED_DIGEST`: the stage-dependency output that the approval's instructions showed.
   Azure DevOps cannot bind an approval to an image, so the pipeline feeds the approver's text and
   this variable from the same output; `verify_run_approved` returns it as `artifact`, and the
   approval source (`deploy.approvals.AzureDevOpsApprovals`) refuses any other digest.

Everything unreadable, missing or pending refuses (exit 1).
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

import httpx

from genaiops.errors import GenaiopsError, UsageError

API_VERSION = "7.1"
ENV_NAMES = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID", "SYSTEM_STAGENAME",
             "SYSTEM_ACCESSTOKEN")
APPROVED_DIGEST_ENV = "GENAIOPS_APPROVED_DIGEST"


class AdoApprovalRefused(GenaiopsError):
    """The stage's Azure DevOps approval is missing, pending, rejected or for another digest (exit 1)."""


@dataclass(frozen=True)
class AdoRun:
    collection_uri: str  # https://dev.azure.com/<org>/
    project: str
    run_id: int
    stage: str  # System.StageName: the stage whose approval counts
    token: str
    approved_digest: str = ""  # GENAIOPS_APPROVED_DIGEST

    @classmethod
    def from_env(cls, environ: dict | None = None) -> AdoRun:
        env = os.environ if environ is None else environ
        missing = [n for n in ENV_NAMES if not env.get(n)]
        if missing:
            raise UsageError(f"approval_source azure_devops needs {', '.join(missing)} (not set)",
                             hint="run inside the Azure DevOps release job and map "
                                  "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step's env")
        return cls(env["SYSTEM_COLLECTIONURI"], env["SYSTEM_TEAMPROJECT"], int(env["BUILD_BUILDID"]),
                   env["SYSTEM_STAGENAME"], env["SYSTEM_ACCESSTOKEN"], env.get(APPROVED_DIGEST_ENV, ""))


class AdoApprovalsClient:
    def __init__(self, run: AdoRun, timeout: float = 30.0):
        self.run = run
        self.timeout = timeout

    def _get(self, path: str, **params) -> dict:
        base = self.run.collection_uri.rstrip("/") + "/" + urllib.parse.quote(self.run.project)
        try:
            response = httpx.get(f"{base}/_apis/{path}", params={**params, "api-version": API_VERSION},
                                 headers={"Authorization": f"Bearer {self.run.token}",
                                          "Accept": "application/json"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise AdoApprovalRefused(f"cannot reach Azure DevOps ({path.split('/')[0]}): "
                                     f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            hint = ("give the project's Build Service identity 'View builds' and read access to "
                    "approvals") if response.status_code in (401, 403) else None
            raise AdoApprovalRefused(f"Azure DevOps answered HTTP {response.status_code} for "
                                     f"{path.split('?')[0]}", hint=hint)
        try:
            data = response.json()
        except ValueError as exc:
            raise AdoApprovalRefused(f"Azure DevOps answer for {path} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise AdoApprovalRefused(f"Azure DevOps answer for {path} is not an object")
        return data

    def stage_records(self) -> list[dict]:
        """The timeline records below this run's current stage (the stage record excluded)."""
        records = self._get(f"build/builds/{self.run.run_id}/timeline").get("records") or []
        stages = [r for r in records if r.get("type") == "Stage" and r.get("identifier") == self.run.stage]
        if len(stages) != 1:
            raise AdoApprovalRefused(f"run {self.run.run_id} has {len(stages)} timeline stages named "
                                     f"{self.run.stage!r}, expected one")
        children: dict[str, list[dict]] = {}
        for record in records:
            children.setdefault(str(record.get("parentId")), []).append(record)
        below, queue = [], [str(stages[0].get("id"))]
        while queue:
            for record in children.get(queue.pop(), []):
                below.append(record)
                queue.append(str(record.get("id")))
        return below

    def _environment_approval(self, approval_id: str) -> dict:
        approval = self._get(f"pipelines/approvals/{urllib.parse.quote(approval_id)}", **{"$expand": "steps"})
        status = str(approval.get("status", "")).lower()
        if status != "approved":
            raise AdoApprovalRefused(f"stage {self.run.stage}: environment approval {approval_id} is "
                                     f"{approval.get('status') or 'unknown'}")
        return approval

    def verify_stage_approved(self) -> dict:
        """This stage's approvals, all granted, or AdoApprovalRefused (fails closed)."""
        records = self.stage_records()
        validations = [r for r in records if r.get("type") == "Task"
                       and str((r.get("task") or {}).get("name", "")).lower() == "manualvalidation"]
        checkpoints = [r for r in records if r.get("type") == "Checkpoint.Approval"]
        if not validations and not checkpoints:
            raise AdoApprovalRefused(f"stage {self.run.stage} of run {self.run.run_id} has no approval",
                                     hint="add a ManualValidation@1 job before the deploy job, or an "
                                          "approval check on the stage's environment")
        for task in validations:
            if task.get("state") != "completed" or task.get("result") != "succeeded":
                raise AdoApprovalRefused(f"stage {self.run.stage}: manual validation "
                                         f"{task.get('name')!r} is {task.get('result') or task.get('state')}")
        approvals = [self._environment_approval(str(r.get("id"))) for r in checkpoints]
        approvers = [s.get("actualApprover", {}).get("displayName") for a in approvals
                     for s in a.get("steps") or [] if s.get("actualApprover")]
        return {"source": "azure_devops", "run_id": self.run.run_id, "stage": self.run.stage,
                "manual_validations": len(validations), "approval_ids": [a.get("id") for a in approvals],
                "by": ", ".join(filter(None, approvers))}

    def verify_run_approved(self) -> dict:
        """This stage's approval and the digest it showed (`artifact`), or AdoApprovalRefused."""
        if not self.run.approved_digest:
            raise AdoApprovalRefused(f"the approval of stage {self.run.stage} names no digest "
                                     f"({APPROVED_DIGEST_ENV} is not set)",
                                     hint="map GENAIOPS_APPROVED_DIGEST from the same build output the "
                                          "approval's instructions show")
        return {**self.verify_stage_approved(), "artifact": self.run.approved_digest}

    def verify_deploy_approved(self, digest: str) -> dict:
        """The stage is approved and the approver was shown `digest`, the one being deployed."""
        approved = self.verify_run_approved()
        if approved["artifact"] != digest:
            raise AdoApprovalRefused(f"the approval of stage {self.run.stage} showed digest "
                                     f"{approved['artifact']}, but this deploy is of {digest}",
                                     hint="deploy the evidence whose digest the approval showed")
        return approved
