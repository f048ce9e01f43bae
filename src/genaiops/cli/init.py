"""`genaiops run init`: validate, create/update connections, register the datasets that changed."""

from __future__ import annotations

import argparse

from genaiops.cli.options import (
    OVERLAY,
    REQUIRED,
    add_command,
    add_registry_flag,
    phase_context,
)
from genaiops.errors import EXIT_OK


def add_init_parser(phases_subparsers) -> None:
    parser = add_command(phases_subparsers, "init", cmd_run_init, use_case=REQUIRED, env=OVERLAY,
                         progress=True)
    add_registry_flag(parser, default="config `registry.backend`, else local")


def cmd_run_init(args: argparse.Namespace) -> int:
    """Validate, create/update connections, register changed datasets.

    Validates the config with its overlay, creates or updates the promptflow connections from
    config + .env, registers the datasets whose content changed, and prints a summary.
    """
    from genaiops.cli.render import emit_json, out, table
    from genaiops.phases.init import run_init

    with phase_context(args) as ctx:
        result = run_init(ctx, registry_backend=args.registry)
    config = ctx.config
    if args.json:
        emit_json(result.to_json())
        return EXIT_OK
    out(f"init {config.use_case} (env: {config.env or 'default'})  "
        f"config: {', '.join(result.config['files'])}")
    out(f"flow: {config.flow_rel} ({ctx.flow.kind}, engine {ctx.engine.name})")
    out("connections:")
    for conn in result.connections:
        target = "LLM SIMULATOR (loopback, not a real model) at " if conn["simulator"] else ""
        out(f"  {conn['name']:<12} {conn['type']:<14} {conn['action']:<9} -> "
            f"{target}{conn['endpoint']}")
    out("datasets:")
    out(table([{"dataset": d["name"], "status": _dataset_status(d), "hash": d["content_hash"][:19]}
               for d in result.datasets]))
    return EXIT_OK


def _dataset_status(dataset: dict) -> str:
    if dataset["status"] == "registered":
        return f"registered v{dataset['version']}"
    return f"unchanged (v{dataset['version']})"
