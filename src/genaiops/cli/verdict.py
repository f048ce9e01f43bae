"""`genaiops run verdict`: init + experiment + evaluate in one process (a pull request's verdict;
exit 0 every gate passed, 1 a run or a gate failed, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.evaluate import render as render_summary
from genaiops.cli.experiment import experiment_options
from genaiops.cli.experiment import render as render_experiment
from genaiops.cli.options import OVERLAY, REQUIRED, add_command, add_registry_flag, phase_context
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_verdict_parser(phases_subparsers) -> None:
    parser = add_command(phases_subparsers, "verdict", cmd_run_verdict,
                         use_case=REQUIRED, env=OVERLAY, progress=True, llm=True)
    add_registry_flag(parser, default="config `registry.backend`, else local")


def cmd_run_verdict(args: argparse.Namespace) -> int:
    """Init, experiment and evaluate in one process: a pull request's verdict.

    Does what `run init`, `run experiment` and `run evaluate` do one after the other, in one
    process that imports the engine and starts its workers once (the three commands pay for that
    three times). Stops at a failed experiment. Exit 0 when every gate passes, 1 when a run or a
    gate fails.
    """
    from genaiops.cli.render import emit_json, err, out
    from genaiops.phases.verdict import VerdictOptions, run_verdict

    with phase_context(args) as ctx:
        result = run_verdict(ctx, VerdictOptions(
            experiment=experiment_options(args), baseline=args.baseline,
            report_dir=args.report_dir, registry_backend=args.registry))
    if args.json:
        emit_json(result.to_json())
        return result.experiment.exit_code if not result.experiment.ok else \
            EXIT_OK if result.ok else EXIT_FAILED
    render_experiment(result.experiment)
    result.experiment.raise_if_failed()
    render_summary(result.summary, out, err)
    return EXIT_OK if result.ok else EXIT_FAILED
