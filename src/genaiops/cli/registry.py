"""`genaiops registry list|show`: what is registered, and which version pins which content."""

from __future__ import annotations

import argparse
import os

from genaiops.cli.options import add_command, add_command_group, add_registry_flag, project
from genaiops.errors import EXIT_OK

BACKEND_ENV = "GENAIOPS_REGISTRY_BACKEND"


def add_registry_parser(subparsers) -> None:
    commands = add_command_group(
        subparsers, "registry", "List and inspect registered datasets and flows",
        "The registered versions of datasets and flows: one version per distinct content, each "
        "pinned by a URI such as local:tickets:3.", ["list", "show"])
    listing = add_command(commands, "list", cmd_list)
    show = add_command(commands, "show", cmd_show)
    for command in (listing, show):
        add_registry_flag(command, default=f"${BACKEND_ENV}, else local",
                          deprecated_alias="--backend")


def _open(args: argparse.Namespace):
    backend = args.registry or os.environ.get(BACKEND_ENV) or "local"
    return project(args).registry(backend)


def cmd_list(args: argparse.Namespace) -> int:
    """Every asset: kind, latest version, number of versions."""
    from genaiops.cli.render import emit_json, out, table

    assets = _open(args).list_assets()
    if args.json:
        emit_json(assets)
    elif not assets:
        out("no registered assets")
    else:
        out(table([{"NAME": a["name"], "KIND": a["kind"], "LATEST": a["latest_version"],
                    "VERSIONS": a["versions"]} for a in assets], blank="-"))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """The versions of one asset, or one version in detail.

    Lists the versions of one asset, oldest first; with --version shows that version in detail:
    URI, content hash, creation time, tags.
    """
    from genaiops.cli.render import emit_json, out, table

    registry = _open(args)
    if args.version is not None:
        reg = registry.get(args.asset, args.version)
        if args.json:
            emit_json(reg.as_dict())
        else:
            out(_detail(reg))
        return EXIT_OK
    registry.get(args.asset)  # UsageError naming the known assets when unknown
    found = registry.versions(args.asset)
    if args.json:
        emit_json([r.as_dict() for r in found])
    else:
        out(table([{"VERSION": r.version, "HASH": r.content_hash[:19], "CREATED": r.created_at,
                    "COMMIT": (r.tags.get("git_commit") or "")[:12], "URI": r.uri}
                   for r in found], blank="-"))
    return EXIT_OK


def _detail(reg) -> str:
    """One registration as aligned `field  value` lines (tags flattened, the hash shown once)."""
    fields = [
        ("uri", reg.uri),
        ("kind", reg.kind),
        ("version", reg.version),
        ("content_hash", reg.content_hash),
        ("created_at", reg.created_at),
        ("description", reg.description),
        ("location", reg.location),
    ] + [(f"tags.{k}", v) for k, v in sorted(reg.tags.items()) if k != "content_hash"]
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {'-' if v in (None, '') else v}" for k, v in fields)
