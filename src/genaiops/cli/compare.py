"""`genaiops compare`: two use cases (two engines, or two flows) on the same dataset and
evaluators, a paired non-inferiority test, and an exit code a pipeline can gate on (0 the
candidate is not worse by more than the margin, 1 it is, or that is not shown, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import OVERLAY, add_command, llm_mode, project, show_progress
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_compare_parser(commands) -> None:
    add_command(commands, "compare", cmd_compare, env=OVERLAY, progress=True, llm=True)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two engines or two flows: is the candidate not worse than the baseline?

    Runs the baseline and the candidate use case (one variant each, runs reused from the ledger)
    on the same dataset, scores both with the same evaluators, pairs the rows and tests
    non-inferiority: McNemar's exact test (margin 0) or Tango's score test for pass/fail scores,
    a paired bootstrap for continuous ones, with intervals. Writes comparison.json,
    changed_rows.csv, comparison.md, junit.xml and report.html plus each side's evaluation
    reports. Exit 0 when the candidate is shown not worse by more than --margin, 1 when it is
    worse or that is not shown (too few rows), 2 on a usage or config error.
    """
    from genaiops.cli.render import emit_json, err, out, table
    from genaiops.phases.compare import CompareOptions, run_compare
    from genaiops.phases.context import PhaseContext
    from genaiops.reports.comparison import console_lines

    repo, progress = project(args), show_progress(args)
    options = CompareOptions(
        baseline_variant=args.baseline_variant, candidate_variant=args.candidate_variant,
        metrics=args.metric, margin=args.margin, confidence=args.confidence,
        min_samples=args.min_samples, force=args.force, max_parallel=args.max_parallel,
        report_dir=args.report_dir)
    with PhaseContext.open(repo, args.baseline, args.env, show_progress=progress, llm=llm_mode(args)) as baseline, \
            PhaseContext.open(repo, args.candidate, args.env, show_progress=progress,
                              llm=llm_mode(args)) as candidate:
        comparison = run_compare(baseline, candidate, options)
    code = EXIT_OK if comparison.verdict == "pass" else EXIT_FAILED
    if args.json:
        emit_json({"ok": code == EXIT_OK, **comparison.to_dict()})
        return code
    for stream, text in console_lines(comparison, table):
        (err if stream == "err" else out)(text)
    return code
