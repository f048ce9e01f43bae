"""report.html: one self-contained page (inline CSS, no scripts, no external assets).

Rendered with jinja2 autoescape, so an LLM output such as `<script>` shows as text and cannot
inject HTML or JavaScript. The view model is computed here; the template only lays it out.
"""

from __future__ import annotations

import json
import math

from jinja2 import Environment, PackageLoader, select_autoescape

from genaiops.evaluation.summary import BUILTIN, Summary

MAX_DRILL_ROWS = 500


def _env() -> Environment:
    env = Environment(loader=PackageLoader("genaiops.reports", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["num"] = _num
    env.filters["compact"] = _compact
    env.filters["lines"] = _lines
    return env


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value)}"
        return f"{value:.{digits}g}"
    return str(value)


def _compact(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _lines(value) -> str:
    """A dict as `key: value` lines (outputs and inputs read better than JSON)."""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_compact(v)}" for k, v in value.items())
    return _compact(value)


def _charts(summary: Summary) -> list[dict]:
    """One bar chart per evaluator metric: a bar per variant with its confidence interval."""
    order = [row.variant for row in summary.leaderboard]
    charts: dict[tuple, dict] = {}
    backed = {(m.evaluator, m.eval_dataset, m.row_score) for m in summary.metrics
              if m.source == "reported" and m.row_score}
    for m in summary.metrics:
        if m.evaluator == BUILTIN:
            continue
        if m.source == "rows" and (m.evaluator, m.eval_dataset, m.metric) in backed:
            continue  # already charted as the reported metric it backs
        key = (m.evaluator, m.eval_dataset, m.metric)
        chart = charts.setdefault(key, {"evaluator": m.evaluator, "dataset": m.dataset,
                                        "eval_dataset": m.eval_dataset, "metric": m.metric,
                                        "bars": []})
        chart["bars"].append(m.model_dump())
    for chart in charts.values():
        top = max([b["value"] or 0 for b in chart["bars"]]
                  + [b["ci_high"] or 0 for b in chart["bars"]] + [1e-9])
        scale = 1.0 if top <= 1.0 else top
        for bar in chart["bars"]:
            pct = lambda v, s=scale: None if v is None else max(0.0, min(100.0, 100 * v / s))  # noqa: E731
            bar.update(width=pct(bar["value"]), lo=pct(bar["ci_low"]), hi=pct(bar["ci_high"]))
        chart["bars"].sort(key=lambda b: order.index(b["variant"]) if b["variant"] in order else 99)
    return list(charts.values())


def _baseline_deltas(summary: Summary) -> list[dict]:
    best = summary.candidate
    if summary.baseline is None or best is None:
        return []
    base = {(m.evaluator, m.eval_dataset, m.metric): m for m in summary.baseline.metrics}
    rows = []
    for m in summary.metrics:
        other = base.get((m.evaluator, m.eval_dataset, m.metric)) if m.variant == best else None
        if other is None:
            continue
        delta = None if m.value is None or other.value is None else m.value - other.value
        rows.append({"metric": m.metric, "evaluator": m.evaluator, "value": m.value,
                     "baseline": other.value, "delta": delta})
    return rows


def _drill(summary: Summary) -> tuple[list[dict], int]:
    """The first MAX_DRILL_ROWS lines, each marked when variants disagree or one failed."""
    shown = []
    for item in summary.rows[:MAX_DRILL_ROWS]:
        cells = item.variants
        scores = {v: json.dumps(c.scores, sort_keys=True, default=str) for v, c in cells.items()}
        outputs = {v: _compact(c.outputs) for v, c in cells.items()}
        judged = scores if any(c.scores for c in cells.values()) else outputs
        shown.append({"dataset": item.dataset, "line": item.line, "inputs": item.inputs,
                      "variants": cells, "disagree": len(set(judged.values())) > 1,
                      "failed": any(c.error for c in cells.values())})
    return shown, len(summary.rows)


def _flaky(summary: Summary) -> list[dict]:
    """The flaky rows with the inputs of the row (its first experiment line's)."""
    inputs = {(row.dataset, row.line): row.inputs for row in summary.rows}
    return [{**f.model_dump(), "inputs": inputs.get((f.dataset, f.lines[0]), {})}
            for f in summary.flaky or []]


def render_html(summary: Summary) -> str:
    variants = [row.variant for row in summary.leaderboard]
    rows, total = _drill(summary)
    status_counts = {}
    for gate in summary.gates:
        status_counts[gate.status] = status_counts.get(gate.status, 0) + 1
    return _env().get_template("report.html.jinja2").render(
        s=summary, variants=variants, charts=_charts(summary), deltas=_baseline_deltas(summary),
        rows=rows, total_rows=total, max_rows=MAX_DRILL_ROWS, status_counts=status_counts,
        operational=_operational(summary), operational_columns=OPERATIONAL, flaky=_flaky(summary))


OPERATIONAL = ["error_rate", "latency_p50_s", "latency_p95_s", "latency_p99_s", "total_tokens",
               "tokens_per_line", "cost"]


def _operational(summary: Summary) -> list[dict]:
    """Built-in metrics pivoted: one row per (variant, dataset)."""
    table: dict[tuple, dict] = {}
    for m in summary.metrics:
        if m.evaluator == BUILTIN:
            row = table.setdefault((m.variant, m.dataset),
                                   {"variant": m.variant, "dataset": m.dataset})
            row[m.metric] = m
    return list(table.values())
