"""`genaiops` command line. Thin: parse, call a phase, render, exit code (0 ok, 1 failed, 2 usage/config).

Heavy modules (promptflow, azure) are imported inside the command functions so that
`genaiops --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genaiops import __version__
from genaiops.cli.args import csv_list, positive_int
from genaiops.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, GenaiopsError

DESCRIPTION = """\
genaiops takes versioned promptflow flows through four phases:
  init        validate config, create connections, register changed datasets
  experiment  run the flow over datasets x variants, concurrently, with a run ledger
  evaluate    score runs, compare variants and baseline, apply quality gates
  deploy      register changed flows, build an image, deploy and smoke-test

Exit codes: 0 ok, 1 a run/gate/smoke test failed, 2 usage or configuration error.
The sample use cases talk to a bundled LLM SIMULATOR (loopback, not a real model) until
you point their connection at Azure OpenAI / OpenAI in .env (see .env.example)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; we keep that, with a hint to --help."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n  fix: see `{self.prog} --help`\n")


def _common(parser: argparse.ArgumentParser, *, use_case_required: bool = True) -> None:
    parser.add_argument("--use-case", "-u", required=use_case_required,
                        help="use case folder under configs/ (e.g. classification)")
    parser.add_argument("--env", "-e", default=None,
                        help="environment overlay: configs/<use_case>/experiment.<env>.yaml "
                             "replaces the blocks it names")
    parser.add_argument("--json", action="store_true", help="print a JSON result for machines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genaiops", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"genaiops {__version__}")
    parser.add_argument("--repo", type=Path, default=None,
                        help="flow repository root (default: nearest folder above with configs/ and flows/)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    new = sub.add_parser("new", help="scaffold a working use case (flow, eval flow, dataset, config)",
                         description="Create flows/, datasets/ and configs/ entries for a new use case "
                                     "that passes `genaiops validate` at once.")
    new.add_argument("use_case", help="name: lowercase letters, digits, - and _")
    new.add_argument("--kind", choices=["dag", "flex", "prompty"], default="dag",
                     help="flow type (default: dag)")
    new.add_argument("--json", action="store_true", help="print a JSON result")
    new.set_defaults(func=cmd_new)

    validate = sub.add_parser("validate", help="check configs, overlays, flows and datasets",
                              description="Validate one use case (or all) and report every problem "
                                          "with file, line, field and fix. Exit 2 on any problem.")
    _common(validate, use_case_required=False)
    validate.set_defaults(func=cmd_validate)

    run = sub.add_parser("run", help="run a phase: init | experiment | evaluate | deploy")
    phases = run.add_subparsers(dest="phase", metavar="PHASE", parser_class=_Parser, required=True)
    init = phases.add_parser("init", help="validate, create/update connections, register changed datasets",
                             description="Validate the config with its overlay, create or update the "
                                         "promptflow connections from config + .env, register datasets "
                                         "whose content changed, and print a summary.")
    _common(init)
    init.add_argument("--registry", choices=["local", "azureml"], default=None,
                      help="registry backend (default: config `registry.backend`, else local)")
    init.set_defaults(func=cmd_run_init)

    exp = phases.add_parser(
        "experiment", help="run the flow over datasets x variants, concurrently, with a run ledger",
        description="Run the standard flow over each selected dataset x variant. DAG variants of a "
                    "dataset run side by side in one promptflow run; runs whose flow, variant, dataset "
                    "and settings are unchanged are reused from the ledger (.genaiops/ledger). "
                    "Exit 1 when failed lines exceed runtime.failed_line_tolerance.")
    _common(exp)
    exp.add_argument("--variants", default="defaults",
                     help="defaults | all (each node's variants, others default) | grid (every "
                          "combination) | node.variant[+node.variant],... | flex: variant names")
    exp.add_argument("--datasets", type=csv_list, default=None, help="comma-separated dataset names (default: all)")
    exp.add_argument("--max-parallel", type=positive_int, default=None,
                     help="promptflow runs at once (default: runtime.max_parallel)")
    exp.add_argument("--workers", type=positive_int, default=None,
                     help="promptflow workers per run (default: runtime.worker_count)")
    exp.add_argument("--max-runs", type=positive_int, default=64,
                     help="refuse to start more variant runs than this (guards --variants grid)")
    exp.add_argument("--budget", type=float, default=None,
                     help="refuse to start when the estimated cost (from previous runs' tokens and "
                          "config prices) exceeds this")
    exp.add_argument("--force", action="store_true", help="re-run even when an identical run is in the ledger")
    exp.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    exp.set_defaults(func=cmd_run_experiment)

    from genaiops.cli.evaluate import add_evaluate_parser

    add_evaluate_parser(phases)

    from genaiops.cli.deploy import add_deploy_parsers

    add_deploy_parsers(sub, phases)

    sim = sub.add_parser("simulator", help="serve the bundled LLM simulator (loopback, not a real model)",
                         description="An OpenAI-compatible LLM SIMULATOR on loopback: deterministic "
                                     "answers from a rules file, usage tokens, latency and fault "
                                     "injection. It is not a language model.")
    from genaiops.cli.simulator import add_arguments as add_simulator_arguments

    add_simulator_arguments(sim)
    sim.set_defaults(func=cmd_simulator)

    from genaiops.cli.registry import add_registry_parser

    add_registry_parser(sub)
    return parser


def cmd_new(args) -> int:
    from genaiops.cli.render import emit_json, out
    from genaiops.scaffold import scaffold_use_case

    root = _repo(args)
    created = scaffold_use_case(root, args.use_case, args.kind)
    if args.json:
        emit_json({"ok": True, "use_case": args.use_case, "kind": args.kind,
                   "created": [str(p.relative_to(root)) for p in created]})
    else:
        out(f"created use case {args.use_case!r} ({args.kind}):")
        for path in created:
            out(f"  {path.relative_to(root)}")
        out(f"next: genaiops validate --use-case {args.use_case}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from genaiops.cli.render import emit_json, out
    from genaiops.config import list_use_cases, load_experiment

    root = _repo(args)
    use_cases = [args.use_case] if args.use_case else list_use_cases(root)
    if not use_cases:
        raise GenaiopsError("no use cases under configs/", hint="create one: genaiops new <name>")
    results, problems = [], []
    for use_case in use_cases:
        try:
            config = load_experiment(root, use_case, args.env)
            results.append({"use_case": use_case, "ok": True,
                            "files": [str(f.relative_to(root)) for f in config.files]})
        except ConfigError as exc:
            problems.extend(exc.problems)
            results.append({"use_case": use_case, "ok": False,
                            "problems": [p.as_dict() for p in exc.problems]})
    if args.json:
        emit_json({"ok": not problems, "env": args.env, "use_cases": results})
    else:
        for result in results:
            if result["ok"]:
                out(f"ok       {result['use_case']}  ({', '.join(result['files'])})")
            else:
                out(f"INVALID  {result['use_case']}")
                for p in result["problems"]:
                    from genaiops.errors import Problem

                    out(f"  - {Problem(**p).render()}")
    return EXIT_USAGE if problems else EXIT_OK


def cmd_run_init(args) -> int:
    from genaiops.cli.render import emit_json, out, table
    from genaiops.config import load_experiment
    from genaiops.phases.init import run_init
    from genaiops.secrets import REDACTOR

    root = _repo(args)
    config = load_experiment(root, args.use_case, args.env)
    REDACTOR.add(*config.secrets())
    result = run_init(config, registry_backend=args.registry)
    if args.json:
        emit_json(result)
        return EXIT_OK
    out(f"init {config.use_case} (env: {config.env or 'default'})  "
        f"config: {', '.join(result['files'])}")
    out(f"flow: {config.flow_rel} ({config.flow_kind})")
    out("connections:")
    for conn in result["connections"]:
        target = "LLM SIMULATOR (loopback, not a real model) at " if conn["simulator"] else ""
        out(f"  {conn['name']:<12} {conn['type']:<14} {conn['action']:<9} -> {target}{conn['endpoint']}")
    out("datasets:")
    out(table([{"dataset": d["name"], "status": (f"registered v{d['version']}" if d["status"] ==
                                                  "registered" else f"unchanged (v{d['version']})"),
                "hash": d["content_hash"][:19]} for d in result["datasets"]]))
    return EXIT_OK


def cmd_run_experiment(args) -> int:
    from genaiops.cli.render import emit_json, out, table
    from genaiops.config import load_experiment
    from genaiops.phases.experiment import ExperimentOptions, raise_if_failed, run_experiment
    from genaiops.secrets import REDACTOR

    root = _repo(args)
    config = load_experiment(root, args.use_case, args.env)
    REDACTOR.add(*config.secrets())
    options = ExperimentOptions(variants=args.variants, datasets=args.datasets,
                                max_parallel=args.max_parallel, worker_count=args.workers,
                                max_runs=args.max_runs, force=args.force, budget=args.budget,
                                show_progress=not (args.no_progress or args.json))
    result = run_experiment(config, options)
    if args.json:
        emit_json(result)
        return EXIT_OK if result["ok"] else EXIT_FAILED
    if result["simulator"] is not None:
        out("LLM: bundled LLM SIMULATOR (loopback, deterministic, not a real model)")
    out(table([{
        "run": r["key"][:8], "variant": r["variant"], "dataset": r["dataset"],
        "ok": r["lines_ok"], "failed": r["lines_failed"], "tokens": r["total_tokens"],
        "cost": "" if r["cost"] is None else f"{r['cost']:.4f}",
        "p50 s": r["latency_p50_s"], "p95 s": r["latency_p95_s"],
        "reused": "yes" if r["reused"] else "no"} for r in result["runs"]]))
    totals = result["totals"]
    out(f"experiment {result['experiment_id']}: {totals['runs']} run(s), {totals['reused']} reused, "
        f"{totals['lines_ok']} lines ok, {totals['lines_failed']} failed, {totals['total_tokens']} tokens, "
        f"{totals['duration_s']:.1f}s")
    raise_if_failed(result)
    return EXIT_OK




def cmd_simulator(args) -> int:
    from genaiops.cli.simulator import run_from_args

    return run_from_args(args)


def _repo(args) -> Path:
    from genaiops.workspace.repo import find_repo_root, repo_from_flag

    return repo_from_flag(args.repo) if getattr(args, "repo", None) else find_repo_root()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except GenaiopsError as exc:
        return _report_error(args, exc)
    except KeyboardInterrupt:
        from genaiops.cli.render import err

        err("interrupted: completed work is kept; run the same command again to resume")
        return 130
    except Exception as exc:  # a bug in genaiops: say so, no traceback unless asked
        if os.environ.get("GENAIOPS_DEBUG"):
            raise
        from genaiops.cli.render import err

        err(f"internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in genaiops; rerun with GENAIOPS_DEBUG=1 to see the traceback")
        return EXIT_FAILED


def _report_error(args, exc: GenaiopsError) -> int:
    from genaiops.cli.render import emit_json, err

    if getattr(args, "json", False):
        payload = {"ok": False, "error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
        if isinstance(exc, ConfigError):
            payload["problems"] = [p.as_dict() for p in exc.problems]
        emit_json(payload)
    else:
        err(f"error: {exc}")
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
