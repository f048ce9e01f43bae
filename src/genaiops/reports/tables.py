"""CSV views: results.csv (one row per dataset line x variant), metrics.csv (one per metric).

Cells hold text an LLM or a dataset controls, and spreadsheets run a cell that starts with a
formula character. As OWASP recommends ("CSV Injection"), every text cell is quoted and a text
cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, which makes it
inert text; numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import json

from genaiops.evaluation.summary import Summary

METRIC_COLUMNS = ["variant", "dataset", "evaluator", "eval_dataset", "metric", "value", "ci_low",
                  "ci_high", "method", "n", "n_valid", "n_nan", "n_error", "source", "row_score"]


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """`value` with a leading `'` when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.lstrip(" ")[:1] in FORMULA_TRIGGERS:
        return "'" + value
    return value


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    # text quoted (so a carriage return cannot end a row), numbers bare
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([neutralise(name) for name in header])
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return neutralise(str(value))


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
