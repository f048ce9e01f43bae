"""The per-line view behind results.csv and report.html: for every dataset line, its inputs and
every variant's outputs, error, latency and scores side by side."""

from __future__ import annotations

from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.evaluation.stats import as_number
from genaiops.evaluation.summary import DrillCell, DrillRow
from genaiops.workspace.ledger import Ledger, RunRecord


def drill_down(records: list[RunRecord], outcomes: list[EvalOutcome],
               ledger: Ledger) -> list[DrillRow]:
    by_line: dict[tuple[str, int], DrillRow] = {}
    for record in records:
        for row in ledger.read_outputs(record.key):
            item = by_line.setdefault((record.dataset, row["line"]), DrillRow(
                dataset=record.dataset, line=row["line"], inputs=row.get("inputs") or {},
                variants={}))
            item.variants[record.variant] = DrillCell(
                outputs=row.get("outputs"), error=row.get("error"), latency_s=row.get("latency_s"),
                scores={})
    for outcome in outcomes:
        judged = outcome.repeats or 1  # evaluator repeats: a line's scores are their mean
        repeated: dict[tuple, list] = {}
        for row in outcome.rows:
            item = by_line.get((outcome.dataset, row["line"] // judged))
            cell = item.variants.get(outcome.variant) if item else None
            if cell is None:
                continue
            for name, value in (row["scores"] or {}).items():
                cell.scores[f"{outcome.evaluator}.{name}"] = value
                if judged > 1:
                    repeated.setdefault((id(cell), name), [cell, []])[1].append(as_number(value))
            if row.get("error") and not cell.error:
                cell.error = f"evaluation: {row['error']}"
        for (_cell, name), (cell, values) in repeated.items():
            numbers = [v for v in values if v is not None]
            if numbers:
                cell.scores[f"{outcome.evaluator}.{name}"] = round(sum(numbers) / len(numbers), 6)
    return [by_line[k] for k in sorted(by_line)]
