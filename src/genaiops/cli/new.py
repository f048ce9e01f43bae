"""`genaiops new`: scaffold a use case that passes `genaiops validate` at once."""

from __future__ import annotations

import argparse

from genaiops.cli.options import add_command, repo_root
from genaiops.errors import EXIT_OK


def add_new_parser(subparsers) -> None:
    add_command(subparsers, "new", cmd_new)


def cmd_new(args: argparse.Namespace) -> int:
    """Scaffold a working use case (flow, eval flow, dataset, config).

    Creates flows/, datasets/ and configs/ entries for a new use case that passes
    `genaiops validate` at once. Never overwrites existing files.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.scaffold import kinds, scaffold_use_case

    root = repo_root(args)
    created = scaffold_use_case(root, args.use_case, args.kind)
    kind = args.kind or next(iter(kinds()))
    if args.json:
        emit_json({"ok": True, "use_case": args.use_case, "kind": kind,
                   "created": [str(p.relative_to(root)) for p in created]})
        return EXIT_OK
    out(f"created use case {args.use_case!r} ({kind}):")
    for path in created:
        out(f"  {path.relative_to(root)}")
    out(f"next: genaiops validate --use-case {args.use_case}")
    return EXIT_OK
