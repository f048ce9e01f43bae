"""`genaiops` command line. Thin: parse, call a phase, render, exit code.

One module per command (`new`, `validate`, `init`, `experiment`, `evaluate`, `deploy`, `approve`,
`promote`, `audit`, `registry`, `report`, `simulator`, `monitor`, `feedback`), the shared flags in
`options`, each command's own in `flags.yaml`, all output through `render`. Heavy modules
(promptflow, azure) are imported inside the command functions so that `--help` stays fast.
Errors become exit codes here and nowhere else.
"""

from __future__ import annotations

import argparse
import os
import sys

from genaiops import __version__
from genaiops.errors import EXIT_FAILED, EXIT_USAGE, GenaiopsError

__all__ = ["build_parser", "main"]

EXIT_INTERRUPTED = 130  # the shell's code for SIGINT

DESCRIPTION = """\
genaiops takes versioned flows (promptflow, or Microsoft Agent Framework apps) through four
phases:
  init        validate config, create connections, register changed datasets
  experiment  run the flow over datasets x variants, concurrently, with a run ledger
  evaluate    score runs, compare variants and baseline, apply quality gates
  build       build a passed evaluation's image once, push it by digest, write its evidence
  deploy      register changed flows, build an image (or take the evidence's digest),
              deploy and smoke-test
  verdict     init + experiment + evaluate in one process (a pull request's verdict)
and compares two engines or flows on the same data (`genaiops compare`, a parity gate).
After deploy, `genaiops monitor` judges the deployed image's traces against its approved
evaluation, and `genaiops feedback promote` turns flagged requests into regression rows.

Exit codes: 0 ok, 1 a run/gate/smoke test failed, 2 usage or configuration error,
130 interrupted. Every command takes --repo PATH, before or after its name.
The sample use cases talk to a bundled LLM SIMULATOR (loopback, not a real model) until
you point their connection at Azure OpenAI / OpenAI in .env (see .env.example)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; we keep that, with a hint to --help."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n  fix: see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    from genaiops.cli import (
        approve,
        audit,
        build,
        compare,
        deploy,
        engine,
        evaluate,
        experiment,
        feedback,
        init,
        monitor,
        new,
        options,
        promote,
        registry,
        report,
        simulator,
        validate,
        verdict,
    )

    parser = _Parser(prog="genaiops", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"genaiops {__version__}")
    options.add_repo_flag(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    new.add_new_parser(commands)
    validate.add_validate_parser(commands)
    run = commands.add_parser(
        "run", help="Run a phase: init | experiment | evaluate | build | deploy | verdict",
        description="Run one phase of a use case. `genaiops run PHASE --help` lists its options.")
    options.add_repo_flag(run)
    phases = run.add_subparsers(dest="phase", metavar="PHASE", required=True)
    init.add_init_parser(phases)
    experiment.add_experiment_parser(phases)
    evaluate.add_evaluate_parser(phases)
    build.add_build_parser(phases)
    deploy.add_deploy_parser(phases)
    verdict.add_verdict_parser(phases)
    compare.add_compare_parser(commands)
    monitor.add_monitor_parser(commands)
    feedback.add_feedback_parser(commands)
    approve.add_approval_parsers(commands)
    promote.add_promote_parsers(commands)
    audit.add_audit_parser(commands)
    registry.add_registry_parser(commands)
    report.add_report_parser(commands)
    simulator.add_simulator_parser(commands)
    engine.add_engine_parser(commands)
    options.check_flags_declared()
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command: 0 ok, 1 failed, 2 usage/config, 130 interrupted; no traceback for users
    (argparse itself exits 2 on a bad command line)."""
    from genaiops.cli.options import FlagSpecError

    try:
        parser = build_parser()
    except FlagSpecError as exc:  # the installation's flags.yaml is damaged or edited
        sys.stderr.write(f"error: {exc}\n  fix: restore genaiops' cli/flags.yaml (reinstall genaiops)\n")
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from genaiops.cli.render import err
    from genaiops.notices import printed

    try:
        with printed(err):
            return args.func(args)
    except GenaiopsError as exc:
        return _report(args, exc.exit_code, exc.message, exc.hint, getattr(exc, "problems", None))
    except BrokenPipeError:
        # the reader went away (`genaiops validate | head`): nothing more can be said on stdout;
        # point it at /dev/null so the interpreter's flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return _report(args, EXIT_INTERRUPTED, "interrupted",
                       "run the same command again to resume (completed work is kept)")
    except Exception as exc:  # a bug in genaiops: say so, no traceback unless asked
        if os.environ.get("GENAIOPS_DEBUG") == "1":
            raise
        return _report(args, EXIT_FAILED, f"internal error: {type(exc).__name__}: {exc}",
                       "this is a bug in genaiops; rerun with GENAIOPS_DEBUG=1 to see the traceback")


def _report(args: argparse.Namespace, exit_code: int, message: str, hint: str | None = None,
            problems: list | None = None) -> int:
    """The one way a failure reaches the user: a JSON object with --json, else `error:` on stderr."""
    from genaiops.cli.render import emit_json, err

    if getattr(args, "json", False):
        payload = {"ok": False, "error": message, "hint": hint, "exit_code": exit_code}
        if problems is not None:
            payload["problems"] = [p.as_dict() for p in problems]
        emit_json(payload)
    else:
        err(f"error: {message}" + (f"\n  fix: {hint}" if hint else ""))
    return exit_code
