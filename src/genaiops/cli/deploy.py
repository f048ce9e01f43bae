"""`genaiops run deploy`: register the changed flow, build or reuse its image, deploy, smoke-test
(exit 0 ok, 1 deploy/smoke failed or approval missing, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, phase_context, show_progress
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_deploy_parser(phases_subparsers) -> None:
    add_command(phases_subparsers, "deploy", cmd_run_deploy, use_case=REQUIRED, env=DEPLOYMENT,
                progress=True)


def cmd_run_deploy(args: argparse.Namespace) -> int:
    """Register the changed flow, build its image, deploy, smoke-test.

    Stages the chosen variant, registers the flow only when it changed, builds (or reuses) its
    Docker image, checks the approval for protected environments, deploys to the environment's
    target (docker | aml | kubernetes) and smoke-tests it with
    configs/<use_case>/sample-request.json. Config: configs/<use_case>/deployment.yaml
    (+ deployment.<env>.yaml). Exit 1 when the smoke test fails or the approval is missing; the
    previous deployment keeps serving.
    """
    from genaiops.cli.render import emit_json, err, out
    from genaiops.phases.deploy import DeployOptions, run_deploy

    progress = err if show_progress(args) else None
    with phase_context(args) as ctx:
        deployed = run_deploy(ctx, DeployOptions(
            env=args.env, target=args.target, variant=args.variant,
            simulator_url=args.simulator_url, progress=progress, evidence=args.evidence))
    result = deployed.to_json()
    if args.json:
        emit_json(result)
        return EXIT_OK if result["ok"] else EXIT_FAILED
    image, outcome = result["image"], result["outcome"]
    build = f"built in {image['build_seconds']:.0f}s" if image["built"] else "reused, not rebuilt"
    if image.get("reference"):
        build = f"{image['reference']}, not rebuilt"
    out(f"deploy {result['use_case']} -> {result['env']} ({result['target']})")
    out(f"variant:  {result['variant']['label']} ({result['variant']['source']})")
    out(f"flow:     {result['registration']}  {result['flow_hash'][:19]}")
    out(f"image:    {image['tag']}  artifact {result['artifact']}  "
        f"({build}, {image['size_bytes'] / 1e6:.0f} MB)")
    out(f"endpoint: {outcome['endpoint']}")
    out(f"smoke:    {'passed' if outcome['smoke'].get('ok') else 'FAILED'}  {outcome['message']}")
    return EXIT_OK if result["ok"] else EXIT_FAILED
