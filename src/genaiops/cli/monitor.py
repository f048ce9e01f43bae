"""`genaiops monitor`: is the deployed image still as good as when it was approved?
(exit 0 no drift or too little traffic to judge, 1 drift, 2 usage/config)."""

from __future__ import annotations

import argparse

from genaiops.cli.options import DEPLOYMENT, REQUIRED, add_command, phase_context
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_monitor_parser(commands) -> None:
    add_command(commands, "monitor", cmd_monitor, use_case=REQUIRED, env=DEPLOYMENT, llm=True)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Judge the deployed image's traffic against the evaluation it was approved with.

    Reads the traces of the image the audit chain says is deployed to the environment (the
    embedded store under .genaiops/traces/, or Application Insights), computes error rate,
    latency p50/p95, tokens and cost per request with intervals, compares them with the approved
    evaluation's figures within the `monitoring.margins` of experiment.yaml (and, on a sample of
    the requests, the scores of the evaluators marked reference_free, LLM judges included), and writes
    monitor.json, monitor.md, junit.xml and report.html. Exit 1 on drift, naming the metric,
    its figure and the approved one; exit 0 when traffic is too thin to judge (and says so).
    With --receive it only runs the embedded trace receiver until Ctrl-C.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.phases.monitor import MonitorOptions, run_monitor

    if args.receive:
        return _receive(args, out)
    with phase_context(args) as ctx:
        result = run_monitor(ctx, MonitorOptions(env=args.env, since_hours=args.since, sample=args.sample,
                                                 app_insights_workspace=args.app_insights))
    code = EXIT_FAILED if result.verdict == "drift" else EXIT_OK
    if args.json:
        emit_json(result.to_json())
        return code
    out(f"monitor {result.use_case} -> {result.env}: image {result.artifact}, variant {result.variant}")
    out(f"traffic: {result.requests} request(s) in the last {result.since_hours:g}h, {result.sampled} sampled; "
        f"approved figures: {result.approved_from or 'none'}")
    for check in result.checks:
        interval = "" if check.ci_low is None else f"  [{check.ci_low:.4g}..{check.ci_high:.4g}]"
        value = "-" if check.value is None else f"{check.value:.4g}"
        approved = "-" if check.approved is None else f"{check.approved:.4g}"
        out(f"  {check.metric:<28} {value:>10}{interval}  approved {approved}  {check.status}")
    for note in result.notes:
        out(f"note: {note}")
    out(f"verdict: {result.verdict.upper()}  {result.message}")
    out(f"reports: {result.report_dir}")
    return code


def _receive(args: argparse.Namespace, out) -> int:
    """The embedded receiver in the foreground on the port the environment's containers export to."""
    from genaiops.cli.options import project
    from genaiops.config.deployment import load_deployment
    from genaiops.deploy.targets.docker import OTLP_PORT
    from genaiops.monitoring.receiver import serve

    repo = project(args)
    environment = load_deployment(repo.root, args.use_case, args.env).environment(args.env)
    port = int(environment.settings.get("otlp_port", OTLP_PORT))
    return serve(repo.workspace.traces_db, port, out)
