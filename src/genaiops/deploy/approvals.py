"""Human approvals bound to one artifact: image digest + use case + environment, with an expiry.

`genaiops approve|reject` append decisions to a tamper-evident log (`audit.ChainedLog`);
`require_approval` is what `run deploy` calls for environments with `requires_approval: true`.
It fails closed: a missing, expired, rejected, mismatched or tampered approval refuses the deploy.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from genaiops.deploy.audit import ChainedLog, audit_key, audit_log
from genaiops.errors import GenaiopsError, UsageError


class ApprovalRefused(GenaiopsError):
    """The environment needs an approval this artifact does not have (exit 1)."""


def approvals_log(workspace, use_case: str, env: str) -> ChainedLog:
    return ChainedLog(workspace.approvals_log(use_case, env), audit_key(workspace))


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
    if decision not in ("approved", "rejected"):
        raise ValueError(decision)
    if not by.strip():
        raise UsageError("--by must name the person deciding")
    entry = {"kind": "approval", "use_case": use_case, "env": env, "artifact": normalise_digest(artifact),
             "decision": decision, "by": by.strip(), "note": note, "context": context or {}}
    record = approvals_log(workspace, use_case, env).append(entry)
    audit_log(workspace).append({"event": decision, "use_case": use_case, "env": env,
                             "artifact": entry["artifact"], "by": entry["by"], "note": note,
                             "approval_seq": record["seq"]})
    return record


def require_approval(workspace, *, use_case: str, env: str, artifact: str, ttl_minutes: int,
                     now: datetime | None = None) -> dict:
    """The approval record that allows deploying `artifact`, or ApprovalRefused saying why not."""
    artifact = normalise_digest(artifact)
    how = (f"review it, then: genaiops approve --use-case {use_case} --env {env} "
           f"--artifact {artifact} --by <your name>")
    records = [r for r in approvals_log(workspace, use_case, env).read()
               if r.get("use_case") == use_case and r.get("env") == env]  # TamperedLog propagates
    mine = [r for r in records if r.get("artifact") == artifact]
    if not mine:
        others = sorted({r["artifact"] for r in records if r.get("decision") == "approved"})
        if others:
            raise ApprovalRefused(
                f"{env} requires an approval of artifact {artifact}; the approvals on record are for "
                f"other artifacts ({', '.join(a[:19] + '...' for a in others)}): wrong digest", hint=how)
        raise ApprovalRefused(f"{env} requires an approval of artifact {artifact} and there is none",
                              hint=how)
    latest = mine[-1]
    if latest["decision"] == "rejected":
        raise ApprovalRefused(f"artifact {artifact} was rejected for {env} by {latest['by']} at "
                              f"{latest['at']}: {latest.get('note') or '(no note)'}",
                              hint="fix the flow and deploy a new artifact; a rejection is final for this one")
    approved_at = datetime.fromisoformat(latest["at"])
    now = now or datetime.now(timezone.utc)
    if now > approved_at + timedelta(minutes=ttl_minutes):
        raise ApprovalRefused(f"the approval of {artifact} for {env} by {latest['by']} at {latest['at']} "
                              f"expired (valid {ttl_minutes} minutes)", hint=how)
    return latest
