"""`genaiops feedback promote`: flagged production traces -> candidate rows -> (with --apply) the
regressions dataset (exit 0 ok, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, add_command_group, phase_context
from genaiops.errors import EXIT_OK


def add_feedback_parser(commands) -> None:
    group = add_command_group(commands, "feedback", "Turn production feedback into dataset rows",
                              "Feedback posted to deployed images (POST /feedback), read from the trace store.",
                              ["promote"])
    add_command(group, "promote", cmd_promote, use_case=REQUIRED, env=DEPLOYMENT)


def cmd_promote(args: argparse.Namespace) -> int:
    """Turn flagged production traces into rows of the use case's regressions dataset.

    Picks the feedback that matches --where (and with --failures the failed requests), takes each
    rated request's recorded inputs and the correction as the expected output, masks secrets and
    PII (plus monitoring.pii_hook), drops rows the dataset already has (content hash) and writes
    the candidates to .genaiops/feedback/<uc>/<env>/candidates.jsonl. --apply appends them to the
    dataset (monitoring.regressions, default datasets/<uc>/regressions.jsonl), which the PR overlay
    lists so the next `run verdict` evaluates them.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.phases.feedback import PromoteOptions, run_promote

    with phase_context(args) as ctx:
        result = run_promote(ctx, PromoteOptions(env=args.env, where=args.where, limit=args.limit,
                                                 apply=args.apply, failures=args.failures))
    if args.json:
        emit_json(result.to_json())
        return EXIT_OK
    out(f"feedback {result.use_case} -> {result.env}: {result.candidates} flagged, {result.new_rows} new row(s), "
        f"{result.duplicates} already in {result.dataset}")
    for why in result.skipped:
        out(f"  skipped: {why}")
    if result.inputs_only:
        out(f"  {result.inputs_only} new row(s) without a correction: inputs only; the next verdict scores them "
            "with the reference-free evaluators, the others skip them (no ground truth)")
    out(f"candidates: {result.candidates_file}")
    if result.applied:
        out(f"applied to {result.dataset}")
    elif result.new_rows:
        out("not applied: review the candidates, then run again with --apply")
    else:
        out(f"nothing new for {result.dataset}")
    return EXIT_OK
