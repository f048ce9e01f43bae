"""`genaiops run evaluate`: parse, call the evaluate phase, print the verdict, set the exit code
(0 every gate passed, 1 a gate or an evaluation failed, 2 usage/config error)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genaiops.cli.args import positive_int
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_evaluate_parser(phases_subparsers) -> None:
    parser = phases_subparsers.add_parser(
        "evaluate", help="run evaluators, rank variants, compare with a baseline, apply quality gates",
        description="Score every run of an experiment with the configured evaluators (promptflow "
                    "evaluation flows or Python functions; identical evaluations are reused), rank "
                    "the variants by evaluation.primary_metric, test the gates on the best variant "
                    "(absolute thresholds, paired regression tests against --baseline) and write "
                    "summary.json, results.csv, metrics.csv, report.html, junit.xml and summary.md. "
                    "Exit 0 when every gate passes, 1 when a gate or an evaluation fails.")
    parser.add_argument("--use-case", "-u", required=True, help="use case folder under configs/")
    parser.add_argument("--env", "-e", default=None,
                        help="environment overlay: configs/<use_case>/experiment.<env>.yaml")
    parser.add_argument("--experiment", default="latest", help="experiment id to evaluate (default: latest)")
    parser.add_argument("--baseline", default=None,
                        help="summary.json (or its folder) from a previous evaluation, e.g. main's; "
                             "or experiment:<id> / previous to evaluate an earlier experiment as baseline")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where to write the reports (default: .genaiops/reports/<use_case>/<id>/)")
    parser.add_argument("--max-parallel", type=positive_int, default=None,
                        help="evaluation runs at once (default: runtime.max_parallel)")
    parser.add_argument("--force", action="store_true", help="re-run evaluations even when reusable")
    parser.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=cmd_run_evaluate)



def cmd_run_evaluate(args: argparse.Namespace) -> int:
    from genaiops.cli.render import emit_json, err, out
    from genaiops.config import load_experiment
    from genaiops.phases.evaluate import EvaluateOptions, run_evaluate
    from genaiops.reports import summary_for_json
    from genaiops.secrets import REDACTOR
    from genaiops.workspace.repo import find_repo_root, repo_from_flag

    root = repo_from_flag(args.repo) if getattr(args, "repo", None) else find_repo_root()
    config = load_experiment(root, args.use_case, args.env)
    REDACTOR.add(*config.secrets())
    options = EvaluateOptions(experiment=args.experiment, baseline=args.baseline,
                              report_dir=args.report_dir, force=args.force,
                              max_parallel=args.max_parallel,
                              show_progress=not (args.no_progress or args.json))
    summary = run_evaluate(config, options)
    code = EXIT_OK if summary["verdict"] == "pass" else EXIT_FAILED
    if args.json:
        emit_json(summary_for_json(summary))
        return code
    render(summary, out, err)
    return code


def render(summary: dict, out, err) -> None:
    from genaiops.cli.render import table

    if summary["llm"]["simulator"]:
        out(f"LLM: {summary['llm']['label']}")
    primary = summary["evaluation"]["primary_metric"] or "primary"
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    out(table([{"#": r["rank"], "variant": r["variant"], primary: fmt(r["value"]),
                "CI": f"{fmt(r['ci_low'])}..{fmt(r['ci_high'])}", "nan": r["n_nan"], "err": r["n_error"],
                "failed lines": r["lines_failed"], "tokens/line": fmt(r["tokens_per_line"]),
                "cost": fmt(r["cost"]), "p95 s": fmt(r["latency_p95_s"])} for r in summary["leaderboard"]]))
    reused = sum(1 for e in summary["evaluations"] if e["reused"])
    out(f"evaluation {summary['id']}: {len(summary['evaluations'])} evaluation run(s), {reused} reused; "
        f"best: {(summary.get('best') or {}).get('variant', '-')}")
    for problem in summary["problems"]:
        err(f"problem: {problem}")
    for gate in summary["gates"]:
        line = f"gate {gate['status'].upper():<12} {gate['name']}: {gate['message']}"
        (err if gate["status"] == "fail" else out)(line)
    if summary.get("report_dir"):
        out(f"reports: {summary['report_dir']}")
    out(f"verdict: {summary['verdict'].upper()}")
