"""evaluate: score an experiment's runs, rank the variants, test the gates, write the reports.

experiment (ledger) -> evaluator runs (reused by content key) -> metrics with intervals per
(variant, dataset, evaluator) + built-ins from the ledger -> leaderboard on the primary metric
-> gates on the best variant (absolute, and paired regression vs a baseline summary) -> one
report folder (summary.json is also the baseline format) + `<state>/evaluations/best-<uc>.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from genaiops.config.model import ExperimentConfig
from genaiops.errors import GenaiopsError, UsageError
from genaiops.evaluation.stats import ERROR, aggregate, as_number, wilson
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.ledger import STATUS_COMPLETED, Ledger, RunRecord
from genaiops.workspace.repo import state_dir

SUMMARY_SCHEMA = "genaiops.evaluation/1"
SIMULATOR_LABEL = "bundled LLM SIMULATOR (loopback, deterministic rules, not a real model)"
BUILTIN = "builtin"


@dataclass
class EvaluateOptions:
    experiment: str = "latest"
    baseline: str | None = None  # path to summary.json (or its folder) | experiment id | "previous"
    report_dir: Path | None = None
    force: bool = False
    max_parallel: int | None = None
    show_progress: bool = True
    force_data_mode: bool = False  # evaluate from ledger outputs even if the promptflow run exists
    write_reports: bool = True


def new_evaluation_id(use_case: str) -> str:
    return time.strftime(f"{use_case}-eval-%Y%m%d-%H%M%S-", time.gmtime()) + hashlib.sha256(
        str(time.time_ns()).encode()).hexdigest()[:6]


def _load_records(ledger: Ledger, experiment: dict) -> tuple[list[RunRecord], list[str]]:
    records, problems = [], []
    for run in experiment["runs"]:
        record = ledger.find(run["key"])
        if record is None or record.status != STATUS_COMPLETED:
            problems.append(f"run {run['variant']} on {run['dataset']} did not complete in experiment "
                            f"{experiment['id']}: not evaluated")
        else:
            records.append(record)
    return records, problems


def load_experiment_or_fail(ledger: Ledger, use_case: str, ref: str) -> dict:
    experiment = ledger.load_experiment(use_case, ref)
    if experiment is None:
        raise UsageError(f"no experiment {ref!r} for use case {use_case!r} in the ledger",
                         hint=f"run `genaiops run experiment -u {use_case}` first, or pass --experiment ID")
    return experiment


def run_evaluate(config: ExperimentConfig, options: EvaluateOptions, *, simulator=None, runner=None) -> dict:
    from genaiops.evaluation.baseline import load_baseline
    from genaiops.evaluation.gates import check_gates, verdict

    started = time.time()
    ledger = Ledger(config.repo_root)
    experiment = load_experiment_or_fail(ledger, config.use_case, options.experiment)
    baseline = (load_baseline(options.baseline, config, options, simulator=simulator, runner=runner,
                              current_experiment=experiment["id"])
                if options.baseline else None)
    summary = evaluate_experiment(config, experiment, options, simulator=simulator, runner=runner)
    if baseline is not None:
        summary["baseline"] = {"id": baseline.get("id"), "experiment_id": baseline.get("experiment_id"),
                               "variant": (baseline.get("best") or {}).get("variant"),
                               "source": options.baseline, "digest": baseline.get("digest"),
                               "metrics": [m for m in baseline.get("metrics", [])
                                           if m["variant"] == (baseline.get("best") or {}).get("variant")]}
    results = check_gates(config.gates, summary, baseline, config.evaluation)
    summary["gates"] = [r.as_dict() for r in results]
    summary["verdict"] = verdict(results, summary["problems"])
    summary["duration_s"] = round(time.time() - started, 3)
    summary["digest"] = digest(summary)
    if options.write_reports:
        from genaiops.reports import write_reports

        folder = Path(options.report_dir) if options.report_dir else (
            state_dir(config.repo_root) / "reports" / config.use_case / summary["id"])
        summary["report_dir"] = str(folder)
        write_reports(summary, folder)
        _write_best_pointer(config, summary)
    return summary


DIGEST_EXCLUDES = ("digest", "report_dir", "duration_s", "rows")


def digest(summary: dict) -> str:
    """sha256 over the summary.json content (minus the digest itself and run-local fields), so
    deploy can bind an approval to exactly this evaluation and anyone can recompute it."""
    body = {k: v for k, v in summary.items() if k not in DIGEST_EXCLUDES}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _write_best_pointer(config: ExperimentConfig, summary: dict) -> None:
    """What the deploy phase promotes: the best variant, bound to flow hash and summary digest."""
    if not summary.get("best"):
        return
    atomic_write_json(state_dir(config.repo_root) / "evaluations" / f"best-{config.use_case}.json", {
        **summary["best"], "use_case": config.use_case, "env": config.env,
        "evaluation_id": summary["id"], "experiment_id": summary["experiment_id"],
        "verdict": summary["verdict"], "summary_digest": summary["digest"],
        "report_dir": summary.get("report_dir")})


def evaluate_experiment(config: ExperimentConfig, experiment: dict, options: EvaluateOptions, *,
                        simulator=None, runner=None) -> dict:
    """Run (or reuse) every evaluation of one experiment and build the summary without gates."""
    from genaiops.engines import open_runner
    from genaiops.evaluation.evaluators import (
        EvaluationStore,
        make_adapter,
        plan_evaluations,
        run_evaluations,
    )
    from genaiops.llm_session import llm_session, output_settings

    ledger = Ledger(config.repo_root)
    evaluation_id = new_evaluation_id(config.use_case)
    records, problems = _load_records(ledger, experiment)
    runner = runner or open_runner(config.runtime.backend, settings=dict(config.registry))
    adapters = {e.name: make_adapter(config, e, runner, force_data_mode=options.force_data_mode)
                for e in config.evaluators}
    needs_llm = any(e.flow for e in config.evaluators)
    session_cm = llm_session(config, simulator) if needs_llm else contextlib.nullcontext(None)
    with session_cm as session:
        settings = output_settings(config) if session else {}
        tasks = plan_evaluations(config, records, adapters, settings)
        outcomes = run_evaluations(tasks, adapters, ledger, EvaluationStore(config.repo_root),
                                   evaluation_id=evaluation_id,
                                   max_parallel=options.max_parallel or config.runtime.max_parallel,
                                   force=options.force, show_progress=options.show_progress)
    for outcome, _reused in outcomes:
        if outcome.status != "completed":
            problems.append(f"evaluator {outcome.evaluator} on {outcome.variant}/{outcome.dataset} "
                            f"failed: {outcome.error}")
    confidence = config.evaluation.confidence
    metrics, scores = [], []
    for outcome, _reused in outcomes:
        entries, blocks = _outcome_metrics(outcome, confidence)
        metrics += entries
        scores += blocks
    for record in records:
        metrics += builtin_metrics(record, ledger, confidence)
    uses_simulator = any((s or {}).get("endpoint") == "simulator" for r in records
                         for s in (r.settings or {}).values())
    summary = {
        "schema": SUMMARY_SCHEMA, "id": evaluation_id, "use_case": config.use_case, "env": config.env,
        "experiment_id": experiment["id"], "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "flow": config.flow_rel, "flow_kind": config.flow_kind,
        "llm": {"simulator": uses_simulator, "label": SIMULATOR_LABEL if uses_simulator else "configured endpoint"},
        "evaluation": {"primary_metric": None, "higher_is_better": config.evaluation.higher_is_better,
                       "confidence": confidence, "alpha": config.evaluation.alpha,
                       "min_samples": config.evaluation.min_samples},
        "datasets": {r.dataset: r.dataset_hash for r in records},
        "metrics": metrics, "scores": scores,
        "evaluations": [{"key": o.key, "evaluator": o.evaluator, "eval_dataset": o.eval_dataset,
                         "variant": o.variant, "dataset": o.dataset, "kind": o.kind, "mode": o.mode,
                         "pf_run": o.pf_run, "status": o.status, "error": o.error,
                         "duration_s": o.duration_s, "reused": reused} for o, reused in outcomes],
        "problems": problems, "gates": [], "verdict": None, "baseline": None,
    }
    primary, leaderboard = rank_variants(config, summary, records)
    summary["evaluation"]["primary_metric"] = primary
    summary["leaderboard"] = leaderboard
    summary["best"] = _best(config, leaderboard, records)
    if summary["best"] is None and records:
        names = sorted({m["metric"] for m in metrics if m["evaluator"] != BUILTIN})
        problems.append(f"no variant has a value for the primary metric {primary!r} "
                        f"(evaluator metrics: {', '.join(names) or 'none numeric'}); set "
                        "evaluation.primary_metric to one of them, or make the evaluator return numbers")
    summary["rows"] = drill_down(records, outcomes, ledger)
    return summary


def _outcome_metrics(outcome, confidence: float) -> tuple[list[dict], list[dict]]:
    """Per-row score blocks and metric entries (row means with intervals + reported aggregates)."""
    base = {"variant": outcome.variant, "dataset": outcome.dataset, "evaluator": outcome.evaluator,
            "eval_dataset": outcome.eval_dataset}
    names = []
    for row in outcome.rows:
        for name, value in (row["scores"] or {}).items():
            if name not in names and isinstance(value, (int, float, bool)):
                names.append(name)  # numeric somewhere = a score; text outputs are not
    entries, blocks, means = [], [], {}
    for name in names:
        values, rows = [], {}
        for row in outcome.rows:
            if row.get("error"):
                values.append(ERROR)
                rows[str(row["line"])] = None
            else:
                value = (row["scores"] or {}).get(name)
                values.append(value)
                number = as_number(value)
                rows[str(row["line"])] = number
        agg = aggregate(values, confidence)
        means[name] = agg
        blocks.append({**base, "score": name, "rows": rows,
                       "errors": {str(r["line"]): r["error"] for r in outcome.rows if r.get("error")}})
        stats = agg.as_dict()
        stats["value"] = stats.pop("mean")
        entries.append({**base, "metric": name, "source": "rows", "row_score": name, **stats})
    for name, value in (outcome.metrics or {}).items():
        number = as_number(value)
        if name in means:  # the evaluator reported its own value of a row score: keep ours, note theirs
            next(e for e in entries if e["metric"] == name)["reported"] = number
            continue
        backing = next((n for n, a in means.items() if number is not None and not math.isnan(a.mean)
                        and abs(a.mean - number) < 5e-4), None)
        entry = {**base, "metric": name, "source": "reported", "row_score": backing, "value": number,
                 "method": "none", "ci_low": None, "ci_high": None, "n": len(outcome.rows),
                 "n_valid": None, "n_nan": 0, "n_error": sum(1 for r in outcome.rows if r.get("error"))}
        if backing:
            agg = means[backing].as_dict()
            entry.update({k: agg[k] for k in ("ci_low", "ci_high", "method", "n", "n_valid", "n_nan", "n_error")})
        entries.append(entry)
    # reported aggregates first: they are what a team names in gates
    entries.sort(key=lambda e: e["source"] != "reported")
    return entries, blocks


def builtin_metrics(record: RunRecord, ledger: Ledger, confidence: float) -> list[dict]:
    """Operational metrics of the experiment run itself (from the ledger)."""
    base = {"variant": record.variant, "dataset": record.dataset, "evaluator": BUILTIN,
            "eval_dataset": None, "source": BUILTIN, "row_score": None, "n": record.lines_total,
            "n_valid": record.lines_total, "n_nan": 0, "n_error": 0}
    low, high = wilson(record.lines_failed, record.lines_total, confidence) if record.lines_total else (None, None)
    lines = max(record.lines_total, 1)
    values = {"error_rate": (record.lines_failed / lines if record.lines_total else math.nan, low, high, "wilson"),
              "latency_p50_s": (record.latency_p50_s, None, None, "none"),
              "latency_p95_s": (record.latency_p95_s, None, None, "none"),
              "latency_p99_s": (record.latency_p99_s, None, None, "none"),
              "total_tokens": (record.total_tokens, None, None, "none"),
              "tokens_per_line": (round(record.total_tokens / lines, 2), None, None, "none"),
              "cost": (record.cost, None, None, "none")}
    entries = []
    for name, (value, lo, hi, method) in values.items():
        number = as_number(value) if value is not None else None
        entries.append({**base, "metric": name, "value": number, "method": method,
                        "ci_low": None if lo is None else round(lo, 6),
                        "ci_high": None if hi is None else round(hi, 6)})
    return entries


def _default_primary(config: ExperimentConfig, metrics: list[dict]) -> str | None:
    if config.evaluation.primary_metric:
        return config.evaluation.primary_metric
    evaluated = [m for m in metrics if m["evaluator"] != BUILTIN]
    return evaluated[0]["metric"] if evaluated else None


def rank_variants(config: ExperimentConfig, summary: dict, records: list[RunRecord]) -> tuple[str | None, list[dict]]:
    from genaiops.evaluation.gates import find_metric

    settings = config.evaluation
    primary = _default_primary(config, summary["metrics"])
    board = []
    for label in dict.fromkeys(r.variant for r in records):
        mine = [r for r in records if r.variant == label]
        entry = find_metric(summary, label, primary, settings.evaluator, settings.dataset) if primary else None
        value = entry.get("value") if entry else None
        lines = sum(r.lines_total for r in mine)
        cost = [r.cost for r in mine if r.cost is not None]
        p95 = [r.latency_p95_s for r in mine if r.latency_p95_s is not None]
        board.append({
            "variant": label, "primary_metric": primary, "value": value,
            "ci_low": entry.get("ci_low") if entry else None, "ci_high": entry.get("ci_high") if entry else None,
            "n_valid": entry.get("n_valid") if entry else None,
            "n_nan": entry.get("n_nan") if entry else None, "n_error": entry.get("n_error") if entry else None,
            "dataset": entry["dataset"] if entry else None,
            "lines": lines, "lines_failed": sum(r.lines_failed for r in mine),
            "error_rate": round(sum(r.lines_failed for r in mine) / lines, 6) if lines else None,
            "total_tokens": sum(r.total_tokens for r in mine),
            "tokens_per_line": round(sum(r.total_tokens for r in mine) / lines, 2) if lines else None,
            "cost": round(sum(cost), 6) if cost else None,
            "latency_p50_s": max((r.latency_p50_s for r in mine if r.latency_p50_s is not None), default=None),
            "latency_p95_s": max(p95, default=None),
        })
    sign = -1 if settings.higher_is_better else 1

    def order(row):
        missing = row["value"] is None
        return (missing, 0 if missing else sign * row["value"], row["error_rate"] or 0,
                row["cost"] or 0, row["variant"])

    board.sort(key=order)
    for rank, row in enumerate(board, 1):
        row["rank"] = rank
    return primary, board


def _best(config: ExperimentConfig, board: list[dict], records: list[RunRecord]) -> dict | None:
    if not board or board[0]["value"] is None:
        return None
    top = board[0]
    mine = [r for r in records if r.variant == top["variant"]]
    return {"variant": top["variant"], "variant_spec": mine[0].variant_spec, "flow": mine[0].flow,
            "flow_kind": mine[0].flow_kind, "flow_hash": mine[0].flow_hash,
            "run_keys": [r.key for r in mine], "metric": top["primary_metric"], "value": top["value"],
            "ci_low": top["ci_low"], "ci_high": top["ci_high"]}


def drill_down(records: list[RunRecord], outcomes, ledger: Ledger) -> list[dict]:
    """Per dataset line: inputs, and every variant's outputs, error and scores side by side."""
    by_line: dict[tuple[str, int], dict] = {}
    for record in records:
        for row in ledger.read_outputs(record.key):
            item = by_line.setdefault((record.dataset, row["line"]), {
                "dataset": record.dataset, "line": row["line"], "inputs": row.get("inputs") or {},
                "variants": {}})
            item["variants"][record.variant] = {"outputs": row.get("outputs"), "error": row.get("error"),
                                                "latency_s": row.get("latency_s"), "scores": {}}
    for outcome, _reused in outcomes:
        for row in outcome.rows:
            item = by_line.get((outcome.dataset, row["line"]))
            if item is None or outcome.variant not in item["variants"]:
                continue
            cell = item["variants"][outcome.variant]
            for name, value in (row["scores"] or {}).items():
                cell["scores"][f"{outcome.evaluator}.{name}"] = value
            if row.get("error") and not cell["error"]:
                cell["error"] = f"evaluation: {row['error']}"
    return [by_line[k] for k in sorted(by_line, key=lambda k: (k[0], k[1]))]


def raise_if_bad_summary(data, source: str) -> dict:
    if not isinstance(data, dict) or data.get("schema") != SUMMARY_SCHEMA:
        raise UsageError(f"{source} is not a genaiops evaluation summary (schema {SUMMARY_SCHEMA})",
                         hint="pass the summary.json written by `genaiops run evaluate`")
    return data


__all__ = ["EvaluateOptions", "GenaiopsError", "run_evaluate", "evaluate_experiment", "SUMMARY_SCHEMA"]
