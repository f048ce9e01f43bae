"""`genaiops simulator`: the LLM SIMULATOR served in the foreground (`genaiops.simulator.foreground`);
its flags are in `flags.yaml`."""

from __future__ import annotations

import argparse
from pathlib import Path

from genaiops.cli.options import OPTIONAL, add_command, repo_root
from genaiops.errors import UsageError
from genaiops.simulator import DEFAULT_PORT


def add_simulator_parser(subparsers) -> None:
    add_command(subparsers, "simulator", cmd_simulator, use_case=OPTIONAL, json=False,
                values={"--port": {"default": DEFAULT_PORT}})


def rules_path_from_args(args: argparse.Namespace) -> Path | None:
    """The rules file named by --rules or --use-case, or None for echo replies."""
    from genaiops.simulator.foreground import use_case_rules

    if args.rules and args.use_case:
        raise UsageError("give --rules or --use-case, not both")
    if args.use_case:
        return use_case_rules(repo_root(args), args.use_case)
    return args.rules


def cmd_simulator(args: argparse.Namespace) -> int:
    """Serve the bundled LLM simulator (loopback, not a real model).

    An OpenAI-compatible LLM SIMULATOR on loopback: deterministic answers from a rules file
    (--rules, or configs/<use_case>/simulator.yaml with --use-case), usage tokens, latency,
    fault injection and, with --rpm/--tpm, an Azure-like quota. It is not a language model.
    Serves until Ctrl-C or SIGTERM.
    """
    from genaiops.cli.render import out
    from genaiops.simulator.foreground import serve

    return serve(rules_path_from_args(args), host=args.host, port=args.port,
                 latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, verbose=args.verbose,
                 quota={"rpm": args.rpm, "tpm": args.tpm}, out=out,
                 drift={"rules": args.drift_rules, "error_rate": args.drift_error_rate,
                        "latency_ms": args.drift_latency_ms})
