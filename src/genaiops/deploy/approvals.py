"""Human approvals bound to one artifact: image digest + use case + environment, with an expiry.

Decisions are records of the audit chain (`audit`): `genaiops approve|reject` append them, and
`run deploy` asks an `ApprovalSource` for a grant before it registers, pushes or starts anything:

- `local`: the newest approval of exactly this digest, use case and environment within its TTL;
- `azure_devops`: the current pipeline run's approval record (`deploy/ado.py`): the digest it names
  (`artifact`) must be this one, it must say who approved (`by`) and when (`at`). A chain head it
  carries (`head`) is checked too: the pipeline is then the chain's outside anchor.
- `github`: the current GitHub Actions run's environment review (`deploy/github.py`): approved by
  someone other than the run's actor, its comment carrying this digest, within the TTL.

For every source a rejection of the digest in the chain is final, an approval older than
`approval_ttl_minutes` has expired (a re-run days later needs a fresh one), and every doubt refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

from genaiops.deploy.audit import ChainHead, audit_log
from genaiops.errors import GenaiopsError, UsageError

DECISIONS = ("approved", "rejected")


class ApprovalRefused(GenaiopsError):
    """The environment needs an approval this artifact does not have (exit 1)."""


@dataclass(frozen=True)
class ApprovalRequest:
    """What a deploy asks to be allowed: this digest, for this use case and environment."""

    use_case: str
    env: str
    artifact: str
    ttl_minutes: int = 60

    @property
    def how(self) -> str:
        return (f"review it, then: genaiops approve --use-case {self.use_case} --env {self.env} "
                f"--artifact {self.artifact} --by <your name>")


@dataclass(frozen=True)
class ApprovalGrant:
    """Why a deploy may go ahead, as recorded with the deployment."""

    source: str  # local | azure_devops
    by: str
    at: str | None = None
    reference: dict = field(default_factory=dict)  # local: the decision's seq; ADO: run and approval ids
    head: ChainHead | None = None  # a chain head the source keeps outside the state folder

    def as_ref(self) -> dict:
        ref = {"source": self.source, "by": self.by, "at": self.at, **self.reference}
        if self.head is not None:
            ref["head"] = str(self.head)
        return {k: v for k, v in ref.items() if v is not None}


class ApprovalSource(Protocol):
    """Where the approval of a deploy comes from."""

    name: str

    def grant(self, request: ApprovalRequest, records: list[dict],
              now: datetime | None = None) -> ApprovalGrant:
        """The grant for `request` given the verified chain `records`, or ApprovalRefused."""
        ...


def decisions(records: list[dict], use_case: str, env: str, artifact: str | None = None) -> list[dict]:
    return [r for r in records if r.get("event") in DECISIONS and r.get("use_case") == use_case
            and r.get("env") == env and (artifact is None or r.get("artifact") == artifact)]


def refuse_if_rejected(records: list[dict], request: ApprovalRequest) -> None:
    """A rejection is final for its digest: no later approval, from any source, undoes it."""
    for record in decisions(records, request.use_case, request.env, request.artifact):
        if record["event"] == "rejected":
            raise ApprovalRefused(
                f"artifact {request.artifact} was rejected for {request.env} by {record['by']} at "
                f"{record['at']}: {record.get('note') or '(no note)'}",
                hint="fix the flow and deploy a new artifact; a rejection is final for this one")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as approval records write it (Azure DevOps: `...T10:00:00.1234567Z`)."""
    text = str(text).strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def require_fresh(request: ApprovalRequest, at: str | None, by: str, now: datetime | None, hint: str) -> None:
    """ApprovalRefused unless the approval was given within `ttl_minutes` (and says when)."""
    if not at:
        raise ApprovalRefused(f"the approval of {request.artifact} for {request.env} does not say when it "
                              "was given: its age cannot be checked", hint=hint)
    try:
        approved_at = parse_time(at)
    except ValueError:
        raise ApprovalRefused(f"the approval time {at!r} is not a time", hint=hint) from None
    now = now or datetime.now(timezone.utc)
    if now > approved_at + timedelta(minutes=request.ttl_minutes):
        raise ApprovalRefused(f"the approval of {request.artifact} for {request.env} by {by} at {at} "
                              f"expired (valid {request.ttl_minutes} minutes)", hint=hint)


class LocalApprovals:
    """Approvals recorded with `genaiops approve` in the audit chain."""

    name = "local"

    def grant(self, request: ApprovalRequest, records: list[dict],
              now: datetime | None = None) -> ApprovalGrant:
        refuse_if_rejected(records, request)
        mine = decisions(records, request.use_case, request.env, request.artifact)
        if not mine:
            others = sorted({r["artifact"] for r in decisions(records, request.use_case, request.env)
                             if r["event"] == "approved"})
            if others:
                raise ApprovalRefused(
                    f"{request.env} requires an approval of artifact {request.artifact}; the approvals on "
                    f"record are for other artifacts ({', '.join(a[:19] + '...' for a in others)}): "
                    "wrong digest", hint=request.how)
            raise ApprovalRefused(f"{request.env} requires an approval of artifact {request.artifact} "
                                  "and there is none", hint=request.how)
        latest = mine[-1]
        require_fresh(request, latest["at"], latest["by"], now, request.how)
        return ApprovalGrant("local", latest["by"], latest["at"], {"seq": latest["seq"]})


class AzureDevOpsApprovals:
    """The approval record of the current Azure DevOps run (`deploy/ado.py` talks to the API)."""

    name = "azure_devops"

    def __init__(self, environ: dict | None = None, client=None):
        self.environ = environ
        self._client = client  # anything with verify_run_approved() -> dict (tests pass a fake)

    def _verified(self) -> dict:
        if self._client is None:
            from genaiops.deploy.ado import AdoApprovalsClient, AdoRun

            self._client = AdoApprovalsClient(AdoRun.from_env(self.environ))
        return self._client.verify_run_approved()

    def grant(self, request: ApprovalRequest, records: list[dict],
              now: datetime | None = None) -> ApprovalGrant:
        refuse_if_rejected(records, request)
        approved = self._verified()
        bound = approved.get("artifact")
        if not bound:
            raise ApprovalRefused(f"the Azure DevOps approval of run {approved.get('run_id')} names no digest",
                                  hint="the approval stage's ManualValidation must be named "
                                       "'Approve image $(imageDigest)'")
        if normalise_digest(bound) != request.artifact:
            raise ApprovalRefused(f"the Azure DevOps approval of run {approved.get('run_id')} is for "
                                  f"artifact {bound}, not {request.artifact}: wrong digest",
                                  hint="approve the run that built this artifact")
        if not approved.get("by"):
            raise ApprovalRefused(f"the Azure DevOps approval of run {approved.get('run_id')} does not say "
                                  "who approved", hint="require an Approvals check on the environment")
        require_fresh(request, approved.get("at"), approved["by"], now,
                      "re-running the deploy later needs a fresh approval: run the release again")
        head = ChainHead.parse(approved["head"]) if approved.get("head") else None
        reference = {k: approved.get(k) for k in ("run_id", "stage", "approval_stage", "approval_ids")}
        return ApprovalGrant("azure_devops", approved["by"], approved.get("at"),
                             {k: v for k, v in reference.items() if v is not None}, head)


class GitHubApprovals:
    """The environment review of the current GitHub Actions run (`deploy/github.py` reads the API)."""

    name = "github"

    def __init__(self, environ: dict | None = None, client=None):
        self.environ = environ
        self._client = client  # anything with verify_run_approved(env, digest, ttl, now) -> dict

    def grant(self, request: ApprovalRequest, records: list[dict],
              now: datetime | None = None) -> ApprovalGrant:
        refuse_if_rejected(records, request)
        if self._client is None:
            from genaiops.deploy.github import GitHubApprovalsClient, GitHubRun

            self._client = GitHubApprovalsClient(GitHubRun.from_env(self.environ))
        approved = self._client.verify_run_approved(request.env, request.artifact, request.ttl_minutes, now)
        if approved.get("artifact") != request.artifact:
            raise ApprovalRefused(f"the GitHub approval of run {approved.get('run_id')} is for artifact "
                                  f"{approved.get('artifact')}, not {request.artifact}: wrong digest")
        reference = {k: approved.get(k) for k in ("run_id", "run_attempt", "job_id", "environment",
                                                  "repository")}
        return ApprovalGrant("github", approved["by"], approved.get("at"), reference)


SOURCES: dict[str, Callable[..., ApprovalSource]] = {
    "local": lambda environ=None: LocalApprovals(),
    "azure_devops": lambda environ=None: AzureDevOpsApprovals(environ),
    "github": lambda environ=None: GitHubApprovals(environ),
}


def approval_source(name: str, environ: dict | None = None) -> ApprovalSource:
    if name not in SOURCES:
        raise UsageError(f"unknown approval_source {name!r}", hint=f"use one of: {', '.join(SOURCES)}")
    return SOURCES[name](environ)


def normalise_digest(digest: str) -> str:
    digest = (digest or "").strip()
    if not digest.startswith("sha256:"):
        digest = "sha256:" + digest
    hexpart = digest.split(":", 1)[1]
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise UsageError(f"--artifact {digest!r} is not an image digest",
                         hint="pass the full sha256:<64 hex> printed by `genaiops run deploy`")
    return digest


def record_decision(workspace, *, use_case: str, env: str, artifact: str, decision: str, by: str,
                    note: str = "", context: dict | None = None) -> dict:
    """Append a person's decision to the audit chain; approving a rejected digest is refused."""
    if decision not in DECISIONS:
        raise ValueError(decision)
    if not by.strip():
        raise UsageError("--by must name the person deciding")
    request = ApprovalRequest(use_case, env, normalise_digest(artifact))

    def still_allowed(records: list[dict]) -> None:
        if decision == "approved":
            refuse_if_rejected(records, request)

    return audit_log(workspace).append(
        {"event": decision, "use_case": use_case, "env": env, "artifact": request.artifact,
         "by": by.strip(), "note": note, "context": context or {}}, check=still_allowed)


def require_approval(workspace, *, use_case: str, env: str, artifact: str, ttl_minutes: int,
                     now: datetime | None = None) -> ApprovalGrant:
    """The local grant to deploy `artifact`, or ApprovalRefused saying why not."""
    request = ApprovalRequest(use_case, env, normalise_digest(artifact), ttl_minutes)
    return LocalApprovals().grant(request, audit_log(workspace).read(), now)
