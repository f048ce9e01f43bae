"""`genaiops run evaluate`: parse, call the evaluate phase, print the verdict, set the exit code
(0 every gate passed, 1 a gate or an evaluation failed, 2 usage/config error)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import OVERLAY, REQUIRED, add_command, phase_context
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_evaluate_parser(phases_subparsers) -> None:
    add_command(phases_subparsers, "evaluate", cmd_run_evaluate, use_case=REQUIRED, env=OVERLAY,
                progress=True, llm=True)


def cmd_run_evaluate(args: argparse.Namespace) -> int:
    """Run evaluators, rank variants, compare with a baseline, apply quality gates.

    Scores every run of an experiment with the configured evaluators (promptflow evaluation flows
    or Python functions; identical evaluations are reused), ranks the variants by
    evaluation.primary_metric, tests the gates on the best variant (absolute thresholds, paired
    regression tests against --baseline) and writes summary.json, results.csv, metrics.csv,
    report.html, junit.xml and summary.md. Exit 0 when every gate passes, 1 when a gate or an
    evaluation fails.
    """
    from genaiops.cli.render import emit_json, err, out
    from genaiops.evaluation.summary import summary_for_json
    from genaiops.phases.evaluate import EvaluateOptions, run_evaluate

    with phase_context(args) as ctx:
        summary = run_evaluate(ctx, EvaluateOptions(
            experiment=args.experiment, baseline=args.baseline, report_dir=args.report_dir,
            force=args.force, max_parallel=args.max_parallel))
    code = EXIT_OK if summary.verdict == "pass" else EXIT_FAILED
    if args.json:
        emit_json(summary_for_json(summary))
        return code
    render(summary, out, err)
    return code


def render(summary, out, err) -> None:
    from genaiops.cli.render import table
    from genaiops.reports.console import console_lines

    for line in console_lines(summary, table):
        (err if line.stream == "err" else out)(line.text)
