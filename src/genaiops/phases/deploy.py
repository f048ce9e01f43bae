"""deploy: verify the audit chain, choose the variant, build (or reuse) its image, pass the
approval gate, register the flow if changed, roll it out to the environment's target, smoke-test
it, and record everything in the audit chain.

Order matters: the chain is verified before anything else, so a tampered trail stops the deploy
before any work; the image is built before the gate because approvals are bound to its digest;
nothing is registered, pushed or started until the gate passed. A refusal is itself recorded.
With `evidence` (written by `run build`) nothing is built: the image is the pushed digest the
evidence names, deployed only if the checkout still stages to the flow inside it; the gate is then
bound to that digest.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import cast

from genaiops.deploy.audit import DeploymentRecord
from genaiops.errors import ConfigError, GenaiopsError, Problem
from genaiops.phases.context import PhaseContext


@dataclass
class DeployOptions:
    env: str
    target: str | None = None  # default: the environment's `target`
    variant: str = "best"  # best | default | node.variant[+...] | flex variant name
    simulator_url: str | None = None  # where deployed containers reach the LLM simulator
    extra_labels: dict = field(default_factory=dict)  # docker container labels (tests use one for cleanup)
    ml_client: object = None  # aml: an MLClient (tests pass a fake)
    pusher: object = None  # aml: pushes the image (tests pass a recorder)
    progress: object = None  # callable(str) for progress lines
    environ: dict | None = None  # ado approvals: where SYSTEM_ACCESSTOKEN etc. are read
    evidence: object = None  # a path to evidence.json: deploy that pushed digest, build nothing


@dataclass
class DeployResult:
    record: DeploymentRecord  # as appended to the audit chain
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.record.get("ok"))

    def to_json(self) -> dict:
        return {"phase": "deploy", "ok": self.ok, "note": self.note, **self.record}


def run_deploy(ctx: PhaseContext, options: DeployOptions) -> DeployResult:
    from genaiops.deploy import audit
    from genaiops.deploy.targets import DeployRequest, SmokeSpec, make_target
    from genaiops.deploy.variant import choose_variant
    from genaiops.phases.build import build_image, register_candidate, stage_candidate

    progress = options.progress or (lambda message: None)
    started = time.monotonic()
    experiment, workspace = ctx.config, ctx.workspace
    use_case = experiment.use_case
    config = ctx.deployment
    environment = config.environment(options.env)
    target_name = options.target or environment.target

    # the whole audit chain first: a tampered trail stops the deploy before anything is built
    trail = audit.audit_log(workspace)
    gated_by_pipeline = environment.requires_approval and environment.approval_source != "local"
    brief = {"use_case": use_case, "env": options.env, "target": target_name}
    records = _verified(workspace, trail, brief, require_anchor=not gated_by_pipeline)

    evidence = _read_evidence(options.evidence)
    if environment.requires_safety and evidence is None:
        from genaiops.deploy.evidence import EvidenceRefused

        raise EvidenceRefused(f"environment {options.env!r} requires a passed safety evaluation "
                              "bound to the image digest; a local build carries none",
                              hint="`genaiops run build --push`, then deploy with --evidence")
    chosen = evidence.chosen_variant() if evidence else choose_variant(ctx, options.variant)
    if chosen.note:
        progress("note: " + chosen.note)
    candidate = stage_candidate(ctx, chosen, simulator_url=options.simulator_url)
    flow, flow_hash, connections = candidate.flow, candidate.flow_hash, candidate.connections
    if evidence:
        evidence.check_deployable(use_case=use_case, flow_hash=flow_hash,
                                  registry=config.image_registry_for(environment),
                                  requires_safety=environment.requires_safety)
        image = evidence.pulled_image(progress)
    else:
        image = build_image(ctx, candidate, progress)

    base_record = {
        **brief, "variant": chosen.as_dict(), "flow_hash": flow_hash, "image": image.as_dict(),
        "artifact": image.artifact, "git_commit": image.labels.get("git_commit", ""),
    }
    grant = None
    if gated_by_pipeline:  # its record may hold the chain head that lets a fresh agent's chain take records
        grant = _approval(workspace, trail, environment, base_record, options.environ)
    _scan(trail, records, image, flow, _brief(base_record), progress)
    if environment.requires_approval and grant is None:  # the scan is on record for the approver
        grant = _approval(workspace, trail, environment, base_record, options.environ)
    if grant is not None:  # before anything leaves this machine or starts
        progress(f"approval: {grant.source} by {grant.by}")

    registration = register_candidate(ctx, candidate, progress)

    previous = audit.last_successful(records, use_case, options.env)
    target = make_target(target_name, workspace=workspace, progress=progress,
                         extra_labels=options.extra_labels, ml_client=options.ml_client,
                         pusher=options.pusher)
    smoke = SmokeSpec(body=_smoke_body(config), expect_outputs=config.expect_outputs or
                      tuple(ctx.flow.outputs), timeout_sec=config.smoke_timeout_sec)
    request = DeployRequest(use_case=use_case, env=environment, config=config, image=image,
                            variant=chosen.label, smoke=smoke, connection_env=connections.env,
                            secret_env_names=connections.secret_names, previous=previous)
    with ExitStack() as stack:
        if target_name == "docker" and options.simulator_url is None and _uses_simulator(experiment):
            _serve_simulator_if_free(stack, experiment, progress)
        if target_name == "docker":
            _receive_traces_if_free(stack, workspace, environment, progress)
        outcome = target.deploy(request)

    record = {**base_record, "event": "deployed" if outcome.ok else "deploy_failed", "ok": outcome.ok,
              "registration": registration.uri, "outcome": outcome.as_dict(),
              "approval": grant.as_ref() if grant else None,
              "previous_artifact": previous.get("artifact") if previous else None,
              "duration_s": round(time.monotonic() - started, 1)}
    try:
        record = cast(DeploymentRecord, trail.append(record))
    except audit.TamperedLog as exc:  # changed while deploying: keep the record in the trust folder
        audit.record_incident(workspace, {**record, "event": "deploy_unrecorded", "reason": exc.message})
        raise audit.TamperedLog(
            f"{options.env} now runs {image.artifact} (smoke test {'passed' if outcome.ok else 'failed'}), "
            f"but the audit chain changed during the deploy, so it was not recorded there: {exc.message}",
            hint=f"the record is kept in {workspace.audit_incidents_log}; restore the chain from a "
                 "trusted copy") from None
    return DeployResult(record, chosen.note)


def _read_evidence(path):
    if path is None:
        return None
    from genaiops.deploy.evidence import Evidence

    return Evidence.read(path)


def _verified(workspace, trail, brief: dict, *, require_anchor: bool) -> list[dict]:
    """The chain's records; a chain that fails its check refuses the deploy, and the refusal goes
    to the trust folder's incident log (the chain itself cannot take it)."""
    from genaiops.deploy import audit

    try:
        return trail.read(require_anchor=require_anchor)
    except audit.TamperedLog as exc:
        audit.record_incident(workspace, {"event": "deploy_refused", **brief, "reason": exc.message})
        raise


def _scan(trail, records: list[dict], image, flow, brief: dict, progress) -> None:
    """The post-build scan (flow files as hashed, no known secret), once per image, expected flow
    and secrets set: a passed scan is an audit record, which only the key holder can write. The
    flow hash is part of the key: a scan proves the image holds *that* flow, so a checkout (or an
    evidence) that expects another flow in the same image is scanned again, and refused."""
    from genaiops.deploy.image_scan import require_clean, scan_image
    from genaiops.secrets import known_secrets

    secrets = known_secrets()
    fingerprint = trail.keyed_digest("\0".join(sorted(secrets)))
    if any(r.get("event") == "image_scanned" and r.get("ok") and r.get("image") == image.image_id
           and r.get("flow_hash") == flow.content_hash and r.get("secrets") == fingerprint
           for r in records):
        progress("image scan: passed before (same image, same flow, same secrets)")
        return
    result = scan_image(image.tag, flow_dir=image.labels.get("flow_dir") or "/flow",
                        expected={entry.rel: entry.sha256 for entry in flow.files},
                        generated=filter(None, image.labels.get("generated", "").split(",")),
                        secrets=secrets)
    trail.append({"event": "image_scanned", **brief, "image": image.image_id, "ok": result.ok,
                  "secrets": fingerprint, "scan": result.as_dict()})
    require_clean(result)
    progress(f"image scan: {result.files} files, {result.bytes / 1e6:.0f} MB in {result.seconds:.1f}s: "
             "the flow as hashed, no known secret")


def _approval(workspace, trail, environment, base_record: dict, environ):
    """The grant for this artifact; a refusal is appended to the chain before it is raised."""
    from genaiops.deploy.approvals import ApprovalRequest, approval_source
    from genaiops.deploy.audit import TamperedLog

    request = ApprovalRequest(base_record["use_case"], environment.name, base_record["artifact"],
                              environment.approval_ttl_minutes)
    brief = _brief(base_record)
    source = approval_source(environment.approval_source, environ)
    try:
        records = trail.read(require_anchor=source.name == "local")  # as of now, not of the start
        grant = source.grant(request, records)
        if grant.head is not None:  # the source keeps a chain head outside the state folder
            trail.vouch(grant.head)
        else:
            trail.read()  # without one, the local anchor must vouch for the chain
    except TamperedLog as exc:
        from genaiops.deploy.audit import record_incident

        record_incident(workspace, {"event": "deploy_refused", **brief, "reason": exc.message})
        raise
    except GenaiopsError as exc:
        trail.append({"event": "deploy_refused", **brief, "reason": exc.message})
        raise
    return grant


def _brief(record: dict) -> dict:
    return {k: record[k] for k in ("use_case", "env", "target", "artifact", "flow_hash")} | \
        {"variant": record["variant"]["label"]}


def _uses_simulator(experiment) -> bool:
    return any(c.uses_simulator for c in experiment.connections)


def _serve_simulator_if_free(stack: ExitStack, experiment, progress) -> None:
    """The container talks to the simulator's fixed port; serve it for the smoke test if nobody does."""
    port = experiment.simulator.port
    with socket.socket() as probe:
        busy = probe.connect_ex(("127.0.0.1", port)) == 0
    if busy:
        return
    from genaiops.simulator import SimulatorServer

    stack.enter_context(SimulatorServer(rules_path=experiment.simulator.rules, port=port,
                                        latency_ms=experiment.simulator.latency_ms))
    progress(f"LLM SIMULATOR (not a real model) started on 127.0.0.1:{port} for the smoke test; the "
             f"container needs one there to keep answering: genaiops simulator -u {experiment.use_case}")


def _receive_traces_if_free(stack: ExitStack, workspace, environment, progress) -> None:
    """Receive the container's traces (the smoke test's first) into the embedded store if nobody
    listens on the environment's OTLP port; `genaiops monitor --receive` keeps one running."""
    from genaiops.deploy.targets.docker import OTLP_PORT
    from genaiops.monitoring.receiver import Receiver

    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return  # the container exports elsewhere
    port = int(environment.settings.get("otlp_port", OTLP_PORT))
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return
    stack.enter_context(Receiver(workspace.traces_db, port=port))
    progress(f"trace receiver on 127.0.0.1:{port} -> {workspace.traces_db} for the smoke test")


def _smoke_body(config) -> dict:
    try:
        body = json.loads(config.smoke_request.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(config.smoke_request_rel, None, None, f"not valid JSON: {exc}",
                                   "write the flow's inputs as one JSON object")]) from None
    if not isinstance(body, dict):
        raise ConfigError([Problem(config.smoke_request_rel, None, None, "expected a JSON object",
                                   "write the flow's inputs as one JSON object")])
    return body
