"""deploy: choose the variant, register the flow if changed, build (or reuse) its image, pass the
approval gate, roll it out to the environment's target, smoke-test it, and record everything.

Order matters: the image is built *before* the gate because approvals are bound to its digest;
nothing reaches a protected environment until an approval of exactly that digest exists. With
`evidence` (written by `run build --push`) nothing is built: the image is the pushed digest the
evidence names, deployed only if the checkout still stages to the flow inside it.
"""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

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
    record: dict  # the deployment record as appended to the deployments log
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

    evidence = _read_evidence(options.evidence)
    chosen = evidence.chosen_variant() if evidence else choose_variant(ctx, options.variant)
    if chosen.note:
        progress("note: " + chosen.note)
    candidate = stage_candidate(ctx, chosen, simulator_url=options.simulator_url)
    if evidence:  # before anything is registered or deployed
        evidence.check_deployable(use_case=use_case, flow_hash=candidate.flow_hash,
                                  registry=config.image_registry_for(environment))
    register_candidate(ctx, candidate, progress)
    flow_hash, registration, connections = candidate.flow_hash, candidate.registration, candidate.connections
    if evidence:
        image = evidence.image_ref()
        progress(f"image {image.reference} (built once in run {evidence.build_id or '?'}, not rebuilt)")
    else:
        image = build_image(ctx, candidate, progress)

    base_record = {
        "use_case": use_case, "env": options.env, "target": target_name, "variant": chosen.as_dict(),
        "flow_hash": flow_hash, "registration": registration.uri, "image": image.as_dict(),
        "artifact": image.artifact, "git_commit": image.labels.get("git_commit", ""),
    }
    log = audit.audit_log(workspace)
    approval = None
    if environment.requires_approval:
        try:
            approval = _check_approval(workspace, use_case, environment, image.artifact, options.environ)
        except GenaiopsError as exc:
            log.append({"event": "deploy_refused", **_brief(base_record), "reason": exc.message})
            raise
        progress(f"approval: {approval.get('decision', 'approved')} by {approval.get('by')}")

    previous = audit.last_successful(workspace, use_case, options.env)
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
        outcome = target.deploy(request)

    approval_ref = None if approval is None else {
        k: approval.get(k) for k in ("source", "seq", "by", "at", "run_id", "stage", "approval_ids", "digest")
        if approval.get(k) is not None}
    record = {**base_record, "ok": outcome.ok, "outcome": outcome.as_dict(), "approval": approval_ref,
              "previous_artifact": previous.get("artifact") if previous else None,
              "duration_s": round(time.monotonic() - started, 1)}
    record = audit.deployments_log(workspace, use_case, options.env).append(record)
    log.append({"event": "deployed" if outcome.ok else "deploy_failed", **_brief(base_record),
                "endpoint": outcome.endpoint, "message": outcome.message, "deployment_seq": record["seq"]})
    return DeployResult(record, chosen.note)


def _brief(record: dict) -> dict:
    return {k: record[k] for k in ("use_case", "env", "target", "artifact", "flow_hash")} | \
        {"variant": record["variant"]["label"]}


def _check_approval(workspace, use_case, environment, artifact, environ) -> dict:
    if environment.approval_source == "azure_devops":
        from genaiops.deploy.ado import AdoApprovalsClient, AdoRun

        return AdoApprovalsClient(AdoRun.from_env(environ)).verify_deploy_approved(artifact)
    from genaiops.deploy.approvals import require_approval

    record = require_approval(workspace, use_case=use_case, env=environment.name, artifact=artifact,
                              ttl_minutes=environment.approval_ttl_minutes)
    return {**record, "source": "local"}


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


def _read_evidence(path):
    if path is None:
        return None
    from genaiops.deploy.evidence import Evidence

    return Evidence.read(path)
