"""Metric entries of an evaluation: what each evaluator run scored, what each experiment run cost.

Per evaluator run: a mean with its interval for every numeric row score, plus the aggregates the
evaluator reported itself (a reported value that equals a row mean borrows that mean's interval
and rows, so gates on it can be paired). Per experiment run: the built-in operational metrics
(error rate with its Wilson interval, latency, tokens, cost) read from its ledger record.
"""

from __future__ import annotations

import math

from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.evaluation.stats import ERROR, Aggregate, aggregate, as_number, wilson
from genaiops.evaluation.summary import BUILTIN, MetricEntry, ScoreBlock
from genaiops.workspace.ledger import RunRecord

SAME_VALUE = 5e-4  # a reported aggregate this close to a row mean is that mean

INTERVAL_FIELDS = ("ci_low", "ci_high", "method", "n", "n_valid", "n_nan", "n_error")


def outcome_metrics(outcome: EvalOutcome, confidence: float, repeats: int = 1
                    ) -> tuple[list[MetricEntry], list[ScoreBlock], list[dict]]:
    """Metric entries (reported aggregates first: they are what a team names in gates), the
    per-row score blocks behind them and the flaky rows. With `repeats` lines per dataset row,
    intervals are clustered by row, and pass/fail scores add pass@<repeats> and their flaky-row
    count; each flaky row is listed (`{score, row, passed, repeats, pass_rate}`)."""
    where = {"variant": outcome.variant, "dataset": outcome.dataset, "evaluator": outcome.evaluator,
             "eval_dataset": outcome.eval_dataset}
    errors = {str(r["line"]): r["error"] for r in outcome.rows if r.get("error")}
    entries, blocks, means, flaky = [], [], {}, []
    for name in _score_names(outcome.rows):
        values = [ERROR if row.get("error") else (row["scores"] or {}).get(name)
                  for row in outcome.rows]
        means[name] = aggregate(values, confidence)
        blocks.append(ScoreBlock(**where, score=name, errors=errors, rows={
            str(row["line"]): None if value is ERROR else as_number(value)
            for row, value in zip(outcome.rows, values)},
            **({"repeats": repeats} if repeats > 1 else {})))
        if repeats > 1:
            means[name], extra, varying = _clustered(name, means[name], outcome.rows, values,
                                                     repeats, confidence, where)
            entries += extra
            flaky += [{"score": name, **row} for row in varying]
        interval = _interval(means[name])
        entries.append(MetricEntry(**where, metric=name, source="rows", row_score=name,
                                   value=interval.pop("mean"), **interval))
    for name, value in (outcome.metrics or {}).items():
        number = as_number(value)
        if name in means:  # the evaluator's own value of a row score: keep ours, note theirs
            next(e for e in entries if e.metric == name).reported = number
            continue
        entries.append(_reported_entry(where, name, number, means, outcome.rows))
    entries.sort(key=lambda e: e.source != "reported")
    return entries, blocks, flaky


def _clustered(name: str, agg: Aggregate, rows: list[dict], values: list, repeats: int,
               confidence: float, where: dict
               ) -> tuple[Aggregate, list[MetricEntry], list[dict]]:
    """The row-score mean with its interval clustered by dataset row (line // repeats), and for
    pass/fail scores `<name>_pass_at_<k>` and `<name>_flaky_rows` (rows whose verdict varies)."""
    from dataclasses import replace

    import numpy as np

    from genaiops.evaluation.repeats import cluster_bootstrap, flaky_rows, pass_at_k
    from genaiops.evaluation.stats import is_binary

    clusters: dict[int, list[float]] = {}
    for row, value in zip(rows, values):
        number = None if value is ERROR else as_number(value)
        clusters.setdefault(row["line"] // repeats, []).append(
            0.0 if number is None and value is ERROR else number)
    usable = {row: [v for v in vals if v is not None] for row, vals in clusters.items()}
    usable = {row: vals for row, vals in usable.items() if vals}
    if not usable:
        return agg, [], []
    low, high = cluster_bootstrap(np.asarray([np.mean(v) for v in usable.values()]), confidence)
    # samples are rows, not calls: min_samples counts rows
    agg = replace(agg, ci_low=low, ci_high=high, method="cluster_bootstrap", n=len(clusters),
                  n_valid=len(usable))
    extra, flaky = [], []
    flat = [v for vals in usable.values() for v in vals]
    if is_binary(flat):
        k = min(repeats, min(len(v) for v in usable.values()))
        at_k = pass_at_k(usable, k, confidence)
        extra.append(MetricEntry(**where, metric=f"{name}_pass_at_{k}", source="rows",
                                 row_score=None, value=round(at_k.value, 6),
                                 ci_low=round(at_k.ci_low, 6), ci_high=round(at_k.ci_high, 6),
                                 method="cluster_bootstrap", n=at_k.rows, n_valid=at_k.rows,
                                 n_nan=0, n_error=0))
        flaky = flaky_rows({row: vals for row, vals in usable.items()})
        extra.append(MetricEntry(**where, metric=f"{name}_flaky_rows", source="rows",
                                 row_score=None, value=len(flaky), ci_low=None, ci_high=None,
                                 method="none", n=len(usable), n_valid=len(usable), n_nan=0,
                                 n_error=0))
    return agg, extra, flaky


def _score_names(rows: list[dict]) -> list[str]:
    """Scores that are numeric on some row - numbers, or numbers written as text ("5"), as LLM
    judges answer; other text outputs of an evaluator are not scores."""
    names = []
    for row in rows:
        for name, value in (row["scores"] or {}).items():
            numeric = isinstance(value, (int, float, bool)) or (
                isinstance(value, str) and as_number(value) is not None)
            if name not in names and numeric:
                names.append(name)
    return names


def _interval(agg: Aggregate) -> dict:
    stats = agg.as_dict()
    return {"mean": stats["mean"], **{k: stats[k] for k in INTERVAL_FIELDS}}


def _reported_entry(where: dict, name: str, number: float | None, means: dict[str, Aggregate],
                    rows: list[dict]) -> MetricEntry:
    backing = next((score for score, agg in means.items() if number is not None
                    and not math.isnan(agg.mean) and abs(agg.mean - number) < SAME_VALUE), None)
    errors = sum(1 for r in rows if r.get("error"))  # failed experiment lines are never scored
    interval = {"ci_low": None, "ci_high": None, "method": "none", "n": len(rows),
                "n_valid": len(rows) - errors, "n_nan": 0, "n_error": errors}
    if backing:
        interval = _interval(means[backing])
        interval.pop("mean")
    return MetricEntry(**where, metric=name, source="reported", row_score=backing, value=number,
                       **interval)


def builtin_metrics(record: RunRecord, confidence: float) -> list[MetricEntry]:
    """Operational metrics of one experiment run, from its ledger record."""
    lines = max(record.lines_total, 1)
    low, high = wilson(record.lines_failed, record.lines_total, confidence) if record.lines_total \
        else (None, None)
    error_rate = record.lines_failed / lines if record.lines_total else math.nan
    values = {"error_rate": (error_rate, low, high, "wilson"),
              "latency_p50_s": (record.latency_p50_s, None, None, "none"),
              "latency_p95_s": (record.latency_p95_s, None, None, "none"),
              "latency_p99_s": (record.latency_p99_s, None, None, "none"),
              "total_tokens": (record.total_tokens, None, None, "none"),
              "tokens_per_line": (round(record.total_tokens / lines, 2), None, None, "none"),
              "cost": (record.cost, None, None, "none")}
    return [MetricEntry(variant=record.variant, dataset=record.dataset, evaluator=BUILTIN,
                        eval_dataset=None, metric=name, source=BUILTIN, row_score=None,
                        value=as_number(value), method=method,
                        ci_low=None if lo is None else round(lo, 6),
                        ci_high=None if hi is None else round(hi, 6),
                        n=record.lines_total, n_valid=record.lines_total, n_nan=0, n_error=0)
            for name, (value, lo, hi, method) in values.items()]
