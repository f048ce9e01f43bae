"""`genaiops run build`: one release candidate from a passed evaluation - its image built once,
pushed by digest, and the evidence file every later deploy checks (exit 0 built, 1 refused or
failed, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, phase_context, show_progress
from genaiops.errors import EXIT_OK


def add_build_parser(phases_subparsers) -> None:
    add_command(phases_subparsers, "build", cmd_run_build, use_case=REQUIRED, env=DEPLOYMENT,
                progress=True)


def cmd_run_build(args: argparse.Namespace) -> int:
    """Build the release candidate once, push it by digest, write its evidence.

    Takes the best variant of a passed evaluation (--summary), checks that this checkout holds the
    flow that was evaluated, builds its serving image (or reuses it), pushes it to the environment's
    image_registry and writes evidence.json: the image reference <registry>/<name>@sha256:..., the
    flow hashes, the variant, the gates and the summary digest. `genaiops run deploy --evidence`
    deploys exactly that digest. Exit 1 when the evaluation failed its gates or the flow changed
    since.
    """
    from genaiops.cli.render import emit_json, err, out
    from genaiops.phases.build import BuildOptions, run_build

    progress = err if show_progress(args) else None
    with phase_context(args) as ctx:
        built = run_build(ctx, BuildOptions(env=args.env, summary=args.summary,
                                            evidence=args.evidence, progress=progress))
    if args.json:
        emit_json(built.to_json())
        return EXIT_OK
    evidence = built.evidence
    out(f"build {evidence.use_case} ({args.env}): {'built' if built.built else 'reused, not rebuilt'}")
    out(f"image:    {evidence.image.reference}")
    out(f"variant:  {evidence.variant.get('label')}  flow {evidence.flow_hash[:19]}")
    out(f"evidence: {built.path}")
    return EXIT_OK
