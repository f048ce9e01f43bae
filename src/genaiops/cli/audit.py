"""`genaiops audit init|verify`: the audit chain's key, and a check of the chain against its anchor."""

from __future__ import annotations

import argparse

from genaiops.cli.options import add_command, add_command_group, project
from genaiops.errors import EXIT_OK


def add_audit_parser(subparsers) -> None:
    commands = add_command_group(
        subparsers, "audit", "The audit chain: create its key, verify it",
        "Approvals, rejections, refusals and deployments form one HMAC-chained log whose key and "
        "newest head live outside the state folder.", ["init", "verify"])
    add_command(commands, "init", cmd_init)
    add_command(commands, "verify", cmd_verify)


def cmd_init(args: argparse.Namespace) -> int:
    """Create the audit key.

    Writes a random HMAC key to audit.key in the trust folder ($GENAIOPS_TRUST_DIR, else
    ~/.config/genaiops), mode 0600, outside the state folder and the repository. Refuses to
    replace an existing key. In CI, set GENAIOPS_AUDIT_KEY from a secret variable instead.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.deploy.audit import create_key

    path = create_key(_project_or_here(args).workspace)
    if args.json:
        emit_json({"ok": True, "key_file": str(path)})
        return EXIT_OK
    out(f"audit key written to {path} (mode 0600)")
    out("back it up: without it no approval, rejection or deployment record can be verified")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the audit chain.

    Checks every record's HMAC and order, that the head anchored in the trust folder is still in
    the chain (nothing newer was removed) and every --head given. Exit 1 when the chain was
    tampered with, 2 when no usable key exists.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.deploy.audit import ChainHead, audit_log, incident_on_damage

    workspace = project(args).workspace
    log = audit_log(workspace)
    heads = [ChainHead.parse(h) for h in args.head]
    with incident_on_damage(workspace, {"event": "verify_failed"}):
        adopted = log.adopt() if args.adopt else None
        records = log.read(heads)
    head = str(ChainHead.of(records[-1])) if records else None
    result = {"ok": True, "log": str(log.path), "anchor": str(log.anchor), "records": len(records),
              "head": head, "adopted": str(adopted) if adopted else None}
    if args.json:
        emit_json(result)
        return EXIT_OK
    if adopted:
        out(f"anchored {log.path} at {adopted} in {log.anchor}")
    out(f"ok: {len(records)} record(s) in {log.path} verify; head {head or '(empty)'}")
    return EXIT_OK


def _project_or_here(args: argparse.Namespace):
    """`audit init` works outside a repository too (the key is per user, not per repository)."""
    from genaiops.errors import UsageError
    from genaiops.project import Project

    try:
        return project(args)
    except UsageError:
        return Project.at(".")
