"""`genaiops run experiment`: the flow over datasets x variants, with a run ledger for reuse."""

from __future__ import annotations

import argparse

from genaiops.cli.options import OVERLAY, REQUIRED, add_command, phase_context
from genaiops.errors import EXIT_OK


def add_experiment_parser(phases_subparsers) -> None:
    add_command(phases_subparsers, "experiment", cmd_run_experiment, use_case=REQUIRED, env=OVERLAY,
                progress=True, llm=True)


def cmd_run_experiment(args: argparse.Namespace) -> int:
    """Run the flow over datasets x variants, concurrently, with a run ledger.

    Runs the standard flow over each selected dataset x variant. DAG variants of a dataset run
    side by side in one promptflow run; runs whose flow, variant, dataset, settings and
    environment are unchanged are reused from the ledger (.genaiops/ledger), and a run with
    failed lines runs those lines again only. Exit 1 when failed lines exceed
    runtime.failed_line_tolerance.
    """
    from genaiops.cli.render import emit_json
    from genaiops.phases.experiment import run_experiment

    with phase_context(args) as ctx:
        result = run_experiment(ctx, experiment_options(args))
    if args.json:
        emit_json(result.to_json())
        return result.exit_code
    render(result)
    result.raise_if_failed()
    return EXIT_OK


def experiment_options(args: argparse.Namespace):
    from genaiops.phases.experiment import ExperimentOptions

    return ExperimentOptions(variants=args.variants, datasets=args.datasets,
                             max_parallel=args.max_parallel, worker_count=args.workers,
                             max_runs=args.max_runs, force=args.force, budget=args.budget)


def render(result) -> None:
    """The experiment's runs as a table and its totals (the console view)."""
    from genaiops.cli.render import out, table

    if result.simulator is not None:
        out("LLM: bundled LLM SIMULATOR (loopback, deterministic, not a real model)")
    out(table([_run_row(run) for run in result.runs]))
    totals = result.totals
    out(f"experiment {result.experiment_id}: {totals.runs} run(s), {totals.reused} "
        f"reused, {totals.lines_ok} lines ok, {totals.lines_failed} failed, "
        f"{totals.total_tokens} tokens, {totals.duration_s:.1f}s")


def _run_row(run) -> dict:
    return {"run": run.key[:8], "variant": run.variant, "dataset": run.dataset,
            "ok": run.lines_ok, "failed": run.lines_failed, "tokens": run.total_tokens,
            "cost": "" if run.cost is None else f"{run.cost:.4f}",
            "p50 s": run.latency_p50_s, "p95 s": run.latency_p95_s,
            "reused": "yes" if run.reused else
            (f"{run.retried_lines} retried" if run.retried_lines else "no")}
