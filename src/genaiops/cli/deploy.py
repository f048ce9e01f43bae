"""CLI for the deploy phase: `genaiops run deploy`, `genaiops approve`, `genaiops reject`.

`cli.py` calls `add_deploy_parsers(sub, phases)`; each command returns an exit code
(0 ok, 1 deploy/smoke failed or approval refused, 2 usage/config). Heavy imports stay inside.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_deploy_parsers(subparsers, phases_subparsers) -> None:
    deploy = phases_subparsers.add_parser(
        "deploy", help="register the changed flow, build its image, deploy, smoke-test",
        description="Stage the chosen variant, register the flow only when it changed, build (or reuse) "
                    "its Docker image, check the approval for protected environments, deploy to the "
                    "environment's target (docker | aml | kubernetes) and smoke-test it with "
                    "configs/<use_case>/sample-request.json. Config: configs/<use_case>/deployment.yaml "
                    "(+ deployment.<env>.yaml). Exit 1 when the smoke test fails or the approval is "
                    "missing; the previous deployment keeps serving.")
    deploy.add_argument("--use-case", "-u", required=True, help="use case folder under configs/")
    deploy.add_argument("--env", "-e", required=True, help="environment under `environments:` in deployment.yaml")
    deploy.add_argument("--target", choices=["docker", "aml", "kubernetes"], default=None,
                        help="override the environment's target")
    deploy.add_argument("--variant", default="best",
                        help="best (the evaluate phase's pick; default) | default | node.variant[+...] | "
                             "a flex variant name")
    deploy.add_argument("--simulator-url", default=None,
                        help="where containers reach the LLM simulator (default: 127.0.0.1:<simulator.port>)")
    deploy.add_argument("--json", action="store_true", help="print a JSON result for machines")
    deploy.set_defaults(func=cmd_run_deploy)

    for name, decision in (("approve", "approved"), ("reject", "rejected")):
        parser = subparsers.add_parser(
            name, help=f"{'approve' if name == 'approve' else 'reject'} one artifact for a protected environment",
            description=f"Record that --by {decision} the image --artifact (its sha256 digest, printed by "
                        "`genaiops run deploy`) for --use-case/--env. Shows the evaluation summary and the "
                        "difference from what is deployed now. Records are tamper-evident and audited.")
        parser.add_argument("--use-case", "-u", required=True)
        parser.add_argument("--env", "-e", required=True)
        parser.add_argument("--artifact", required=True, help="image digest sha256:<64 hex>")
        parser.add_argument("--by", required=True, help="who decides (name or e-mail)")
        parser.add_argument("--note", default="", help="why")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=cmd_decide, decision=decision)


def _repo(args) -> Path:
    from genaiops.workspace.repo import find_repo_root, repo_from_flag

    return repo_from_flag(args.repo) if getattr(args, "repo", None) else find_repo_root()


def cmd_run_deploy(args) -> int:
    from genaiops.cli.render import emit_json, err, out
    from genaiops.phases.deploy import DeployOptions, run_deploy

    progress = None if args.json else (lambda line: err(line))
    result = run_deploy(_repo(args), args.use_case, DeployOptions(
        env=args.env, target=args.target, variant=args.variant, simulator_url=args.simulator_url,
        progress=progress))
    if args.json:
        emit_json(result)
    else:
        image = result["image"]
        outcome = result["outcome"]
        out(f"deploy {result['use_case']} -> {result['env']} ({result['target']})")
        out(f"variant:  {result['variant']['label']} ({result['variant']['source']})")
        out(f"flow:     {result['registration']}  {result['flow_hash'][:19]}")
        out(f"image:    {image['tag']}  artifact {result['artifact']}  "
            f"({'built in {:.0f}s'.format(image['build_seconds']) if image['built'] else 'reused, not rebuilt'}, "
            f"{image['size_bytes'] / 1e6:.0f} MB)")
        out(f"endpoint: {outcome['endpoint']}")
        out(f"smoke:    {'passed' if outcome['smoke'].get('ok') else 'FAILED'}  {outcome['message']}")
    return EXIT_OK if result["ok"] else EXIT_FAILED


def cmd_decide(args) -> int:
    from genaiops.cli.render import emit_json, out, table
    from genaiops.config.deployment import load_deployment
    from genaiops.deploy.approvals import normalise_digest, record_decision
    from genaiops.deploy.audit import last_successful
    from genaiops.deploy.variant import best_pointer_path, summary_md_for
    from genaiops.workspace.repo import state_dir

    root = _repo(args)
    config = load_deployment(root, args.use_case, args.env)
    environment = config.environment(args.env)
    artifact = normalise_digest(args.artifact)
    state = state_dir(root)
    candidate = _image_labels(artifact)
    current = last_successful(state, args.use_case, args.env) or {}
    rows = [
        {"field": "artifact", "deployed": current.get("artifact", "(nothing)"), "candidate": artifact},
        {"field": "flow_hash", "deployed": current.get("flow_hash", ""), "candidate": candidate.get("flow_hash", "?")},
        {"field": "variant", "deployed": (current.get("variant") or {}).get("label", ""),
         "candidate": candidate.get("variant", "?")},
        {"field": "summary_digest", "deployed": (current.get("variant") or {}).get("summary_digest", ""),
         "candidate": candidate.get("summary_digest", "?")},
    ]
    summary = summary_md_for(state, args.use_case)
    summary_text = summary.read_text(encoding="utf-8") if summary else None
    record = record_decision(state, use_case=args.use_case, env=args.env, artifact=artifact,
                             decision=args.decision, by=args.by, note=args.note,
                             context={"diff": rows, "requires_approval": environment.requires_approval})
    if args.json:
        emit_json({"ok": True, "decision": args.decision, "record": record, "diff": rows,
                   "summary_md": summary_text})
        return EXIT_OK
    if summary_text:
        out("evaluation summary:")
        out(summary_text.rstrip())
        out()
    else:
        out(f"(no evaluation summary next to {best_pointer_path(state, args.use_case)}: run `genaiops run evaluate -u {args.use_case}`)")
    out("change against what is deployed now:")
    out(table(rows))
    if not environment.requires_approval:
        out(f"note: {args.env} does not require approval (requires_approval is not set)")
    out(f"{args.decision}: {artifact} for {args.use_case}/{args.env} by {args.by} "
        f"(record {record['seq']}, valid {environment.approval_ttl_minutes} min)")
    return EXIT_OK


def _image_labels(artifact: str) -> dict:
    """The candidate's provenance labels when the image is on this machine (else empty)."""
    from genaiops.deploy import dockercli
    from genaiops.deploy.image import LABEL_PREFIX

    if dockercli.unavailable_reason():
        return {}
    info = dockercli.inspect("image", artifact) or {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    return {k[len(LABEL_PREFIX):]: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)}

