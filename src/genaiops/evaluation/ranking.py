"""Ranking: the leaderboard of variants on the primary metric, and the deploy candidate.

Ties (and missing values, ranked last) are broken by error rate, then cost, then name, so the
order is stable. The best variant is the top row, if it has a primary metric value at all.
"""

from __future__ import annotations

from genaiops.config.model import EvaluationSettings
from genaiops.evaluation.summary import (
    BUILTIN,
    BestVariant,
    LeaderboardRow,
    MetricEntry,
    resolve_metric,
)
from genaiops.workspace.ledger import RunRecord


def primary_metric(settings: EvaluationSettings, metrics: list[MetricEntry]) -> str | None:
    """`evaluation.primary_metric`, else the first metric an evaluator produced (named with its
    evaluator when another source reports the same name)."""
    if settings.primary_metric:
        return settings.primary_metric
    evaluated = [m for m in metrics if m.evaluator != BUILTIN]
    if not evaluated:
        return None
    first = evaluated[0]
    shared = {m.evaluator for m in metrics if m.metric == first.metric} - {first.evaluator}
    return f"{first.evaluator}.{first.metric}" if shared else first.metric


def primary_problem(settings: EvaluationSettings, metrics: list[MetricEntry], primary: str,
                    variants: list[str]) -> str | None:
    """Why the primary metric names no single source (an ambiguous name), if it does not."""
    for variant in variants:
        _entry, ambiguous = resolve_metric(metrics, variant, primary, settings.evaluator,
                                           settings.dataset)
        if ambiguous:
            return f"evaluation.primary_metric: {ambiguous}"
    return None


def leaderboard(settings: EvaluationSettings, metrics: list[MetricEntry], records: list[RunRecord]
                ) -> tuple[str | None, list[LeaderboardRow]]:
    """(primary metric, one ranked row per variant with its runs' operational totals)."""
    primary = primary_metric(settings, metrics)
    rows = []
    for label in dict.fromkeys(r.variant for r in records):
        entry = (resolve_metric(metrics, label, primary, settings.evaluator, settings.dataset)[0]
                 if primary else None)
        rows.append(_row(label, primary, entry, [r for r in records if r.variant == label]))
    sign = -1 if settings.higher_is_better else 1

    def order(row: dict):
        missing = row["value"] is None
        return (missing, 0 if missing else sign * row["value"], row["error_rate"] or 0,
                row["cost"] or 0, row["variant"])

    rows.sort(key=order)
    return primary, [LeaderboardRow(**row, rank=rank) for rank, row in enumerate(rows, 1)]


def _row(label: str, primary: str | None, entry: MetricEntry | None, runs: list[RunRecord]) -> dict:
    lines = sum(r.lines_total for r in runs)
    failed = sum(r.lines_failed for r in runs)
    tokens = sum(r.total_tokens for r in runs)
    cost = [r.cost for r in runs if r.cost is not None]
    scored = {field: getattr(entry, field) if entry else None
              for field in ("value", "ci_low", "ci_high", "n_valid", "n_nan", "n_error", "dataset")}
    return {
        "variant": label, "primary_metric": primary, **scored,
        "lines": lines, "lines_failed": failed,
        "error_rate": round(failed / lines, 6) if lines else None,
        "total_tokens": tokens,
        "tokens_per_line": round(tokens / lines, 2) if lines else None,
        "cost": round(sum(cost), 6) if cost else None,
        "latency_p50_s": _slowest(r.latency_p50_s for r in runs),
        "latency_p95_s": _slowest(r.latency_p95_s for r in runs),
    }


def _slowest(latencies) -> float | None:
    return max((s for s in latencies if s is not None), default=None)


def best_variant(board: list[LeaderboardRow], records: list[RunRecord]) -> BestVariant | None:
    """The top row, bound to its runs' flow and flow hash; None when nobody has a value."""
    if not board or board[0].value is None:
        return None
    top = board[0]
    runs = [r for r in records if r.variant == top.variant]
    return BestVariant(variant=top.variant, variant_spec=runs[0].variant_spec, flow=runs[0].flow,
                       flow_kind=runs[0].flow_kind, flow_hash=runs[0].flow_hash,
                       run_keys=[r.key for r in runs], metric=top.primary_metric, value=top.value,
                       ci_low=top.ci_low, ci_high=top.ci_high)
