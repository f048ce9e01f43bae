"""Azure DevOps: who approved this release, for which digest, and when?

A release deploy job (`approval_source: azure_devops`) asks the Azure DevOps REST API, with
`System.AccessToken` mapped into the step's env (`SYSTEM_ACCESSTOKEN: $(System.AccessToken)`), and
trusts nothing the run's own outputs say about the approval:

1. the run's timeline, `GET {collection}{project}/_apis/build/builds/{BUILD_BUILDID}/timeline`:
   - below the *approval stage* (`GENAIOPS_APPROVAL_STAGE`, default the current stage): every
     `ManualValidation` task must be completed with result `succeeded`, and at least one must
     exist. The digest is bound to **that record**: the task's display name as the service recorded
     it ("Approve image sha256:...") must name exactly one digest, and it must be the one being
     deployed. Its `finishTime` is the approval's time;
   - below the approval stage and the current (deploy) stage: every `Checkpoint.Approval` (an
     approval check of the deploy stage's environment; the record id is the approval id) must read
     `approved` from `GET .../_apis/pipelines/approvals/{id}?$expand=steps`, and at least one must
     exist: it is where Azure DevOps records **who** approved (`steps[].actualApprover`).
2. the approvers: every approving step's `actualApprover` (or the group it approved for,
   `assignedApprover`) must be listed in `GENAIOPS_RELEASE_APPROVERS` (the prod variable group's
   `releaseApprovers`; none listed is a usage error), and must be neither the run's requester
   (`GET .../build/builds/{id}`: `requestedFor`, `requestedBy`) nor an author or committer of the
   change (`git log HEAD^1..HEAD` in the checkout: the commit, or everything a merge brought in).

Approvals of other stages - another use case's release still waiting - are not looked at. The
approval source (`deploy.approvals.AzureDevOpsApprovals`) then refuses another digest and an
approval older than `approval_ttl_minutes`. Everything unreadable, missing or pending refuses (exit 1).
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.parse
from dataclasses import dataclass, field

import httpx

from genaiops.ci.azure_devops import answer_object
from genaiops.errors import GenaiopsError, UsageError

API_VERSION = "7.1"
ENV_NAMES = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID", "SYSTEM_STAGENAME",
             "SYSTEM_ACCESSTOKEN")
APPROVAL_STAGE_ENV = "GENAIOPS_APPROVAL_STAGE"
APPROVERS_ENV = "GENAIOPS_RELEASE_APPROVERS"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_UNEXPANDED = re.compile(r"\$\([^)]*\)")


class AdoApprovalRefused(GenaiopsError):
    """The release's Azure DevOps approval is missing, pending, rejected, by the wrong person or for
    another digest (exit 1)."""


def parse_approvers(text: str) -> tuple[str, ...]:
    """`releaseApprovers`: comma-separated users (email / UPN) or groups (`[Project]\\Group`)."""
    if _UNEXPANDED.search(text or ""):
        raise UsageError(f"{APPROVERS_ENV} holds the literal text {text.strip()}: the variable is not defined",
                         hint="set releaseApprovers in the prod variable group (docs/azure-devops.md §3)")
    approvers = tuple(a.strip() for a in (text or "").split(",") if a.strip())
    if not approvers:
        raise UsageError(f"no release approvers configured ({APPROVERS_ENV} is empty)",
                         hint="set releaseApprovers in the prod variable group to the people or group who "
                              "may approve a release; without it anyone with queue rights could")
    return approvers


def change_authors(repo: str | os.PathLike = ".") -> tuple[str, ...]:
    """Authors and committers (emails) of the change being released: HEAD, or every commit a merge
    HEAD brought in. AdoApprovalRefused when git cannot say (fails closed)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AdoApprovalRefused(f"cannot tell who authored the change: git {' '.join(args)}: "
                                     f"{done.stderr.strip() or done.returncode}",
                                     hint="the deploy job must check out the commit (checkout: self)")
        return done.stdout
    parents = git("rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    span = ["HEAD^1..HEAD"] if len(parents) > 1 else ["-1", "HEAD"]
    return tuple(sorted({e.strip().lower() for e in git("log", "--format=%ae%n%ce", *span).split() if e.strip()}))


@dataclass(frozen=True)
class AdoRun:
    collection_uri: str  # https://dev.azure.com/<org>/
    project: str
    run_id: int
    stage: str  # System.StageName: the deploy stage (its environment's approvals count)
    token: str
    approval_stage: str = ""  # the stage whose ManualValidation showed the digest (default: `stage`)
    approvers: tuple[str, ...] = ()  # who may approve (GENAIOPS_RELEASE_APPROVERS)
    authors: tuple[str, ...] = field(default=())  # who wrote the change: may not approve it

    @classmethod
    def from_env(cls, environ: dict | None = None, repo: str | os.PathLike = ".") -> AdoRun:
        env = os.environ if environ is None else environ
        missing = [n for n in ENV_NAMES if not env.get(n)]
        if missing:
            raise UsageError(f"approval_source azure_devops needs {', '.join(missing)} (not set)",
                             hint="run inside the Azure DevOps release job and map "
                                  "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step's env")
        approvers = parse_approvers(env.get(APPROVERS_ENV, ""))
        return cls(env["SYSTEM_COLLECTIONURI"], env["SYSTEM_TEAMPROJECT"], int(env["BUILD_BUILDID"]),
                   env["SYSTEM_STAGENAME"], env["SYSTEM_ACCESSTOKEN"],
                   env.get(APPROVAL_STAGE_ENV) or env["SYSTEM_STAGENAME"], approvers, change_authors(repo))


def _identities(person: dict | None) -> set[str]:
    person = person or {}
    return {str(person.get(k, "")).strip().lower() for k in ("uniqueName", "displayName", "mailAddress")} - {""}


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
        return answer_object(response, path.split("?")[0], AdoApprovalRefused,
                             "give the project's Build Service identity 'View builds' and read "
                             "access to approvals")

    def stage_records(self, stage: str | None = None, records: list[dict] | None = None) -> list[dict]:
        """The timeline records below one stage of this run (the stage record excluded)."""
        stage = stage or self.run.stage
        if records is None:
            records = self._get(f"build/builds/{self.run.run_id}/timeline").get("records") or []
        stages = [r for r in records if r.get("type") == "Stage" and r.get("identifier") == stage]
        if len(stages) != 1:
            raise AdoApprovalRefused(f"run {self.run.run_id} has {len(stages)} timeline stages named "
                                     f"{stage!r}, expected one")
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

    def requester(self) -> set[str]:
        build = self._get(f"build/builds/{self.run.run_id}")
        return _identities(build.get("requestedFor")) | _identities(build.get("requestedBy"))

    def _check_approver(self, step: dict, approval_id: str, forbidden: set[str]) -> str:
        actual = _identities(step.get("actualApprover"))
        if not actual:
            raise AdoApprovalRefused(f"environment approval {approval_id} names no approver")
        name = (step.get("actualApprover") or {}).get("uniqueName") or sorted(actual)[0]
        allowed = {a.lower() for a in self.run.approvers}
        if not (actual | _identities(step.get("assignedApprover"))) & allowed:
            raise AdoApprovalRefused(f"environment approval {approval_id} was given by {name}, who is not "
                                     f"one of the release approvers ({', '.join(self.run.approvers)})",
                                     hint="only releaseApprovers may approve; set the same approvers on "
                                          "the prod environment's Approvals check")
        if actual & forbidden:
            raise AdoApprovalRefused(f"environment approval {approval_id} was given by {name}, who "
                                     "requested this run or authored the change: nobody approves their own",
                                     hint="another release approver must approve")
        return name

    def verify_run_approved(self) -> dict:
        """The release's approvals, all granted, by allowed people, with the digest the approval
        record names (`artifact`) and when it was given (`at`); or AdoApprovalRefused."""
        if not self.run.approvers:
            raise UsageError(f"no release approvers configured ({APPROVERS_ENV} is empty)",
                             hint="set releaseApprovers in the prod variable group")
        records = self._get(f"build/builds/{self.run.run_id}/timeline").get("records") or []
        approval_stage = self.run.approval_stage or self.run.stage
        shown = self.stage_records(approval_stage, records)
        deploying = self.stage_records(self.run.stage, records) if approval_stage != self.run.stage else []
        validations = [r for r in shown if r.get("type") == "Task"
                       and str((r.get("task") or {}).get("name", "")).lower() == "manualvalidation"]
        if not validations:
            raise AdoApprovalRefused(f"stage {approval_stage} of run {self.run.run_id} has no manual "
                                     "validation showing the digest",
                                     hint="the release's approval stage runs ManualValidation@1 named "
                                          "'Approve image $(imageDigest)'")
        digests = set()
        for task in validations:
            if task.get("state") != "completed" or task.get("result") != "succeeded":
                raise AdoApprovalRefused(f"stage {approval_stage}: manual validation "
                                         f"{task.get('name')!r} is {task.get('result') or task.get('state')}")
            digests |= set(DIGEST.findall(str(task.get("name", ""))))
        if len(digests) != 1:
            raise AdoApprovalRefused(f"the manual validation of stage {approval_stage} names "
                                     f"{len(digests)} image digests in its recorded name, expected one",
                                     hint="name the task 'Approve image $(imageDigest)'")
        checkpoints = [r for r in shown + deploying if r.get("type") == "Checkpoint.Approval"]
        if not checkpoints:
            raise AdoApprovalRefused(f"stage {self.run.stage} has no environment approval: Azure DevOps "
                                     "records who approved only there",
                                     hint="add an Approvals check with the release approvers to the prod "
                                          "environment (docs/azure-devops.md §5)")
        forbidden = self.requester() | {a.lower() for a in self.run.authors}
        names, ids, times = [], [], [str(t.get("finishTime")) for t in validations if t.get("finishTime")]
        for record in checkpoints:
            approval = self._environment_approval(str(record.get("id")))
            steps = [s for s in approval.get("steps") or [] if str(s.get("status", "")).lower() == "approved"]
            if not steps:
                raise AdoApprovalRefused(f"environment approval {approval.get('id')} has no approving step")
            for step in steps:
                names.append(self._check_approver(step, str(approval.get("id")), forbidden))
                if step.get("lastModifiedOn"):
                    times.append(str(step["lastModifiedOn"]))
            ids.append(approval.get("id"))
        return {"source": "azure_devops", "run_id": self.run.run_id, "stage": self.run.stage,
                "approval_stage": approval_stage, "manual_validations": len(validations),
                "approval_ids": ids, "by": ", ".join(sorted(set(names))),
                "at": min(times) if times else None, "artifact": digests.pop()}

    def verify_deploy_approved(self, digest: str) -> dict:
        """The release is approved and its approval record names `digest`, the one being deployed."""
        approved = self.verify_run_approved()
        if approved["artifact"] != digest:
            raise AdoApprovalRefused(f"the approval of stage {approved['approval_stage']} showed digest "
                                     f"{approved['artifact']}, but this deploy is of {digest}",
                                     hint="deploy the evidence whose digest the approval showed")
        return approved
