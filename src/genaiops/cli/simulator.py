"""`genaiops simulator`: the flags of the LLM SIMULATOR, and the call that serves it in the
foreground (`genaiops.simulator.foreground`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genaiops.cli.args import amount, positive_int
from genaiops.cli.options import OPTIONAL, add_command, repo_root
from genaiops.errors import UsageError
from genaiops.simulator import DEFAULT_PORT


def add_simulator_parser(subparsers) -> None:
    parser = add_command(subparsers, "simulator", cmd_simulator, use_case=OPTIONAL, json=False)
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--rules", type=Path, metavar="PATH",
                        help="simulator rules YAML (default: the --use-case's, else echo replies)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added to every answer (default 0)")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="extra delay up to this, fixed per request (default 0)")
    parser.add_argument("--rpm", type=positive_int, default=None,
                        help="enforce a quota of this many requests per minute per deployment, "
                             "over 1 s windows, like Azure OpenAI (429 with retry-after-ms)")
    parser.add_argument("--tpm", type=positive_int, default=None,
                        help="enforce this many estimated tokens (prompt + max_tokens) per minute "
                             "per deployment, over 10 s windows")
    parser.add_argument("--drift-rules", type=Path, metavar="PATH", default=None,
                        help="drift mode: answer from this second rules file (what a changed model would say)")
    parser.add_argument("--drift-error-rate", type=amount, default=0.0, metavar="FRACTION",
                        help="drift mode: this fraction of answers fail with 500")
    parser.add_argument("--drift-latency-ms", type=amount, default=0.0, metavar="MS",
                        help="drift mode: added to every answer's latency")
    parser.add_argument("--verbose", action="store_true",
                        help="log method, path, status and duration of each request")


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
