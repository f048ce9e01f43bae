"""CSV views: results.csv (one row per dataset line x variant), metrics.csv (one per metric)."""

from __future__ import annotations

import csv
import io
import json

from genaiops.evaluation.summary import Summary

METRIC_COLUMNS = ["variant", "dataset", "evaluator", "eval_dataset", "metric", "value", "ci_low",
                  "ci_high", "method", "n", "n_valid", "n_nan", "n_error", "source", "row_score"]


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def metrics_csv(summary: Summary) -> str:
    return _csv(METRIC_COLUMNS,
                [[_cell(getattr(m, c)) for c in METRIC_COLUMNS] for m in summary.metrics])


def results_csv(summary: Summary) -> str:
    rows = summary.rows
    score_names = sorted({name for item in rows for cell in item.variants.values()
                          for name in cell.scores})
    header = ["dataset", "line", "variant", "inputs", "outputs", "error", "latency_s", *score_names]
    body = []
    for item in rows:
        for variant, cell in item.variants.items():
            body.append([item.dataset, item.line, variant, _cell(item.inputs), _cell(cell.outputs),
                         _cell(cell.error), _cell(cell.latency_s),
                         *[_cell(cell.scores.get(n)) for n in score_names]])
    return _csv(header, body)
