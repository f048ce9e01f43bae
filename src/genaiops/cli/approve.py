"""`genaiops approve|reject`: record a person's decision on one image for a protected environment,
after showing the evaluation that image was released from (its verdict and gates, read from the
summary kept under the state folder for the evidence's or the image's summary digest) and what
would change against the deployment of now. An image whose evaluation did not pass is not
approved."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, project
from genaiops.errors import EXIT_OK, GenaiopsError, UsageError


def add_approval_parsers(subparsers) -> None:
    for name, func in (("approve", cmd_approve), ("reject", cmd_reject)):
        add_command(subparsers, name, func, use_case=REQUIRED, env=DEPLOYMENT)


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve one artifact for a protected environment.

    Records that --by approved the image --artifact (its sha256 digest, printed by
    `genaiops run deploy`) for --use-case/--env. Shows the evaluation summary and the difference
    from what is deployed now. Records are tamper-evident and audited.
    """
    return _decide(args, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject one artifact for a protected environment.

    Records that --by rejected the image --artifact (its sha256 digest, printed by
    `genaiops run deploy`) for --use-case/--env, which blocks deploying it there. Shows the
    evaluation summary and the difference from what is deployed now. Records are tamper-evident
    and audited.
    """
    return _decide(args, "rejected")


def _decide(args: argparse.Namespace, decision: str) -> int:
    from genaiops.cli.render import emit_json, out, table
    from genaiops.config.deployment import load_deployment
    from genaiops.deploy.approvals import normalise_digest, record_decision
    from genaiops.deploy.audit import audit_log, incident_on_damage, last_successful
    from genaiops.deploy.variant import summary_md_for

    repo = project(args)
    config = load_deployment(repo.root, args.use_case, args.env)
    environment = config.environment(args.env)
    artifact = normalise_digest(args.artifact)
    workspace = repo.workspace
    refused = {"event": "decision_unrecorded", "decision": decision, "use_case": args.use_case,
               "env": args.env, "artifact": artifact, "by": args.by}
    with incident_on_damage(workspace, refused):
        current = last_successful(audit_log(workspace).read(), args.use_case, args.env) or {}
        labels = _image_labels(artifact)
        evaluation, shown, claimed = _evaluation_of(workspace, artifact, args.evidence, labels)
        verdict = evaluation.verdict if evaluation is not None else claimed
        if decision == "approved" and verdict not in (None, "pass"):
            raise GenaiopsError(f"{artifact} was released from an evaluation whose verdict is "
                                f"{verdict}"
                                f"{f' ({evaluation.id})' if evaluation is not None else ''}: not approved",
                                hint="evaluate and build a version that passes its gates")
        rows = _diff(current, artifact, labels)
        if evaluation is not None:
            from genaiops.evaluation.safety import safety_result
            from genaiops.reports.markdown import render_markdown

            summary_text = render_markdown(evaluation)
            safety = safety_result(evaluation)
        else:
            summary = summary_md_for(workspace, args.use_case)
            summary_text = summary.read_text(encoding="utf-8") if summary else None
            safety = _safety(summary)
        record = record_decision(workspace, use_case=args.use_case, env=args.env, artifact=artifact,
                                 decision=decision, by=args.by, note=args.note,
                                 context={"diff": rows,
                                          "requires_approval": environment.requires_approval})
    if args.json:
        emit_json({"ok": True, "decision": decision, "record": record, "diff": rows,
                   "head": f"{record['seq']}:{record['mac']}", "summary_md": summary_text,
                   "evaluation": _brief(evaluation), "evidence": shown,
                   "safety": safety, "requires_safety": environment.requires_safety})
        return EXIT_OK
    out(f"evidence: {shown}")
    if evaluation is not None:
        out(f"evaluation {evaluation.id}: verdict {(evaluation.verdict or '?').upper()}")
        for gate in evaluation.gates:
            out(f"  gate {gate.name or gate.metric}: {gate.status} - {gate.message}")
        out()
    if summary_text:
        out("evaluation summary:" if evaluation is not None else
            "latest evaluation summary (NOT verified to be this artifact's):")
        out(summary_text.rstrip())
        out()
    else:
        out(f"(no evaluation summary next to {workspace.best_pointer(args.use_case)}: "
            f"run `genaiops run evaluate -u {args.use_case}`)")
    from genaiops.evaluation.safety import safety_line

    out(safety_line(safety) + (f"  [{args.env} requires a passed safety evaluation]"
                               if environment.requires_safety else ""))
    out("change against what is deployed now:")
    out(table(rows))
    if not environment.requires_approval:
        out(f"note: {args.env} does not require approval (requires_approval is not set)")
    out(f"{decision}: {artifact} for {args.use_case}/{args.env} by {args.by} "
        f"(record {record['seq']}, valid {environment.approval_ttl_minutes} min)")
    out(f"chain head: {record['seq']}:{record['mac']}  (keep it: `genaiops audit verify --head` "
        "proves later that nothing up to here was removed)")
    return EXIT_OK


def _diff(current: dict, artifact: str, candidate: dict) -> list[dict]:
    """What is deployed now against the candidate image, field by field."""
    deployed_variant = current.get("variant") or {}
    return [
        {"field": "artifact", "deployed": current.get("artifact", "(nothing)"),
         "candidate": artifact},
        {"field": "flow_hash", "deployed": current.get("flow_hash", ""),
         "candidate": candidate.get("flow_hash", "?")},
        {"field": "variant", "deployed": deployed_variant.get("label", ""),
         "candidate": candidate.get("variant", "?")},
        {"field": "summary_digest", "deployed": deployed_variant.get("summary_digest", ""),
         "candidate": candidate.get("summary_digest", "?")},
    ]


def _safety(summary_md) -> dict:
    """The safety gates of the evaluation whose summary is shown ({} when there is none)."""
    from genaiops.evaluation.safety import safety_result
    from genaiops.evaluation.summary import Summary

    path = summary_md.with_name("summary.json") if summary_md else None
    try:
        return safety_result(Summary.from_json(path.read_text(encoding="utf-8"), str(path)))
    except Exception:  # unreadable or absent: shown as "not evaluated", never a traceback
        return {}


def _image_labels(artifact: str) -> dict:
    """The candidate's provenance labels when the image is on this machine (else empty)."""
    from genaiops.deploy import dockercli
    from genaiops.deploy.image import LABEL_PREFIX

    if dockercli.unavailable_reason():
        return {}
    info = dockercli.inspect("image", artifact) or {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    return {k[len(LABEL_PREFIX):]: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)}


def _evaluation_of(workspace, artifact: str, evidence_path, labels: dict):
    """(the kept summary this artifact was released from or None, one line saying where it came
    from, the verdict the evidence claims or None). The evidence (or the image's `summary_digest`
    label) names the digest; only a summary kept under that digest by `run evaluate` is shown as
    the artifact's."""
    from genaiops.evaluation.store import SummaryStore

    digest, where = labels.get("summary_digest", ""), "the local image's summary_digest label"
    claimed = None
    if evidence_path is not None:
        from genaiops.deploy.evidence import Evidence

        evidence = Evidence.read(evidence_path)
        if artifact not in (evidence.image.digest, evidence.image.image_id):
            raise UsageError(f"evidence {evidence_path} is for image {evidence.image.digest}, not {artifact}",
                             hint="pass the evidence.json that `genaiops run build` wrote for this digest")
        digest, where = evidence.summary_digest, f"evidence {evidence_path}"
        claimed = evidence.verdict or "none"
    if not digest or digest == "none":
        return None, (f"none found for {artifact}: its verdict and gates cannot be shown (pass "
                      "--evidence evidence.json)"), claimed
    kept = SummaryStore(workspace).find(digest)
    if kept is None:
        return None, (f"{where} names summary {digest[:16]}, which no `run evaluate` kept in "
                      f"{workspace.evaluation_summaries_dir}: its verdict and gates cannot be "
                      f"verified (the evidence claims verdict {claimed})"), claimed
    return kept, f"{where}: summary {digest[:16]} as `run evaluate` kept it", claimed


def _brief(summary) -> dict | None:
    if summary is None:
        return None
    return {"id": summary.id, "verdict": summary.verdict, "digest": summary.recorded_digest,
            "gates": [{"name": g.name or g.metric, "status": g.status, "message": g.message}
                      for g in summary.gates]}
