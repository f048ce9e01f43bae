"""`genaiops registry list|show`: what is registered, and which version pins which content."""

from __future__ import annotations

import argparse
import json
import os

from genaiops.registry.base import BACKENDS, Registration

BACKEND_ENV = "GENAIOPS_REGISTRY_BACKEND"


def add_registry_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "registry", help="list and inspect registered datasets and flows"
    )
    commands = parser.add_subparsers(dest="registry_command", metavar="{list,show}", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--backend",
            choices=BACKENDS,
            default=None,
            help=f"registry backend (default: ${BACKEND_ENV} or local)",
        )
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    listing = commands.add_parser(
        "list", help="every asset: kind, latest version, number of versions"
    )
    common(listing)
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="the versions of one asset, or one version in detail")
    show.add_argument("asset", help="asset name")
    show.add_argument(
        "--version", type=int, default=None, metavar="N", help="one version in detail"
    )
    common(show)
    show.set_defaults(func=cmd_show)


def _open(args):
    from genaiops.registry.base import open_registry
    from genaiops.workspace.repo import find_repo_root

    backend = args.backend or os.environ.get(BACKEND_ENV) or "local"
    return open_registry(backend, find_repo_root())


def table(headers: list[str], rows: list[list]) -> str:
    """A plain fixed-width table (no dependency, copy-paste friendly)."""
    cells = [[str(h) for h in headers]] + [
        ["-" if v in (None, "") else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args) -> int:
    assets = _open(args).list_assets()
    if args.json:
        print(json.dumps(assets, indent=2))
    elif not assets:
        print("no registered assets")
    else:
        rows = [[a["name"], a["kind"], a["latest_version"], a["versions"]] for a in assets]
        print(table(["NAME", "KIND", "LATEST", "VERSIONS"], rows))
    return 0


def _detail(reg: Registration) -> str:
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


def cmd_show(args) -> int:
    registry = _open(args)
    if args.version is not None:
        reg = registry.get(args.asset, args.version)
        print(json.dumps(reg.as_dict(), indent=2) if args.json else _detail(reg))
        return 0
    registry.get(args.asset)  # UsageError naming the known assets when unknown
    found = registry.versions(args.asset)
    if args.json:
        print(json.dumps([r.as_dict() for r in found], indent=2))
    else:
        rows = [
            [
                r.version,
                r.content_hash[:19],
                r.created_at,
                (r.tags.get("git_commit") or "")[:12],
                r.uri,
            ]
            for r in found
        ]
        print(table(["VERSION", "HASH", "CREATED", "COMMIT", "URI"], rows))
    return 0
