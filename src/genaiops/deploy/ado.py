"""Azure DevOps: verify that the current pipeline run's approval was granted.

Inside a release the deploy step calls the Approvals REST API
`GET {collection}{project}/_apis/pipelines/approvals?$expand=steps&api-version=7.1`
with `System.AccessToken` (map it: `env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken)}`) and
accepts only when every approval of this run (`BUILD_BUILDID`) is `approved` and at least one is.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

import httpx

from genaiops.errors import GenaiopsError, UsageError

API_VERSION = "7.1"


class AdoApprovalRefused(GenaiopsError):
    """The run's Azure DevOps approval is missing, pending or rejected (exit 1)."""


@dataclass(frozen=True)
class AdoRun:
    collection_uri: str  # https://dev.azure.com/<org>/
    project: str
    run_id: int
    token: str

    @classmethod
    def from_env(cls, environ: dict | None = None) -> AdoRun:
        env = os.environ if environ is None else environ
        missing = [n for n in ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID", "SYSTEM_ACCESSTOKEN")
                   if not env.get(n)]
        if missing:
            raise UsageError(f"approval_source azure_devops needs {', '.join(missing)} (not set)",
                             hint="run inside the Azure DevOps release and map "
                                  "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step's env")
        return cls(env["SYSTEM_COLLECTIONURI"], env["SYSTEM_TEAMPROJECT"], int(env["BUILD_BUILDID"]),
                   env["SYSTEM_ACCESSTOKEN"])


class AdoApprovalsClient:
    def __init__(self, run: AdoRun, timeout: float = 30.0):
        self.run = run
        self.timeout = timeout

    def approvals(self) -> list[dict]:
        base = self.run.collection_uri.rstrip("/") + "/" + urllib.parse.quote(self.run.project)
        try:
            response = httpx.get(f"{base}/_apis/pipelines/approvals",
                                 params={"$expand": "steps", "api-version": API_VERSION},
                                 headers={"Authorization": f"Bearer {self.run.token}",
                                          "Accept": "application/json"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise AdoApprovalRefused(f"cannot read Azure DevOps approvals: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            hint = "grant the build service 'View' on approvals" if response.status_code in (401, 403) else None
            raise AdoApprovalRefused(f"Azure DevOps approvals API answered HTTP {response.status_code}",
                                     hint=hint)
        try:
            data = response.json() if response.content else {}
        except ValueError as exc:
            raise AdoApprovalRefused(f"cannot read Azure DevOps approvals: not JSON ({exc})") from None
        return list(data.get("value") or [])

    def verify_run_approved(self) -> dict:
        """The approval of this run, or AdoApprovalRefused (fails closed)."""
        mine = [a for a in self.approvals()
                if str(((a.get("pipeline") or {}).get("owner") or {}).get("id")) == str(self.run.run_id)]
        if not mine:
            raise AdoApprovalRefused(f"run {self.run.run_id} has no Azure DevOps approval",
                                     hint="add an approval check on the environment of the deploy stage")
        bad = [a for a in mine if str(a.get("status", "")).lower() != "approved"]
        if bad:
            first = bad[0]
            who = [s.get("actualApprover", {}).get("displayName") for s in first.get("steps") or []
                   if s.get("actualApprover")]
            raise AdoApprovalRefused(f"run {self.run.run_id} approval {first.get('id')} is "
                                     f"{first.get('status')}" + (f" (by {', '.join(who)})" if who else ""))
        approvers = [s.get("actualApprover", {}).get("displayName")
                     for a in mine for s in a.get("steps") or [] if s.get("actualApprover")]
        return {"source": "azure_devops", "run_id": self.run.run_id,
                "approval_ids": [a.get("id") for a in mine], "by": ", ".join(filter(None, approvers))}
