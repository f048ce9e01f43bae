"""`genaiops promote|rollback`: the deliberate end of a canary release on an Azure ML endpoint -
the canary gets 100 % (promote) or the previous deployment gets it back (rollback) - recorded in
the audit chain with who did it. A release never promotes itself, and the next one is refused
while a canary waits (docs/deploy.md, "Targets")."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, project
from genaiops.errors import EXIT_OK, UsageError


def add_promote_parsers(subparsers) -> None:
    for name, func in (("promote", cmd_promote), ("rollback", cmd_rollback)):
        add_command(subparsers, name, func, use_case=REQUIRED, env=DEPLOYMENT)


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote the canary of an Azure ML endpoint to all of the traffic.

    The deployment with the smaller share (the last release, at traffic_percent) gets all traffic
    and the previous one is deleted. Recorded in the audit chain as `promoted`, with --by.
    """
    return _shift(args, "promote")


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll the canary of an Azure ML endpoint back.

    The previous deployment gets all of the traffic again and the canary is deleted. Recorded in
    the audit chain as `rolled_back`, with --by.
    """
    return _shift(args, "rollback")


def _shift(args: argparse.Namespace, action: str) -> int:
    from genaiops.cli.render import emit_json, out
    from genaiops.config.deployment import load_deployment
    from genaiops.deploy.audit import audit_log
    from genaiops.deploy.targets import make_target

    if not args.by.strip():
        raise UsageError("--by must name the person deciding")
    repo = project(args)
    config = load_deployment(repo.root, args.use_case, args.env)
    environment = config.environment(args.env)
    if environment.target != "aml":
        raise UsageError(f"environment {args.env} deploys to {environment.target}: {action} acts on the "
                         "traffic split of an Azure ML endpoint (target: aml)")
    trail = audit_log(repo.workspace)
    trail.read()  # a chain that fails its check is not written to, and nothing moves
    moved = make_target("aml", progress=None if args.json else out).shift_traffic(
        environment.settings, args.use_case, args.env, action)
    record = trail.append({"event": "promoted" if action == "promote" else "rolled_back",
                           "use_case": args.use_case, "env": args.env, "target": "aml",
                           "artifact": moved["artifact"], "by": args.by.strip(), "note": args.note, **moved})
    if args.json:
        emit_json({"ok": True, "action": action, "record": record})
        return EXIT_OK
    out(f"{action}: {moved['endpoint']} now serves {moved['traffic_after']} (was {moved['traffic_before']}); "
        f"deleted {moved['deleted']}; audit record {record['seq']} by {record['by']}")
    return EXIT_OK
