"""From an engine batch's line results to ledger records: one record per (dataset, variant).

A run whose earlier record has failed lines is re-run over those lines only; its new record
merges them, by dataset line number, into the lines the earlier run got right (kept as they
were). Totals - lines, tokens, cost, latency percentiles, first errors - are computed over the
merged lines, so a record always describes the outputs it lists.
"""

from __future__ import annotations

import math
import time

from genaiops.engines.base import BatchResult, LineResult
from genaiops.secrets import redact
from genaiops.workspace.ledger import STATUS_COMPLETED, RunRecord

MAX_ERRORS_KEPT = 5


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return round(ordered[rank], 4)


def line_row(line: LineResult) -> dict:
    return {"line": line.line, "ok": line.ok, "inputs": line.inputs, "outputs": line.outputs,
            "error": redact(line.error) if line.error else None, "latency_s": line.latency_s,
            "prompt_tokens": line.prompt_tokens, "completion_tokens": line.completion_tokens,
            **({"node": line.node} if line.node and not line.ok else {})}


def member_rows(result: BatchResult, index: int, lines: list[int], inputs: dict[int, dict]) -> list[dict]:
    """The rows member `index` produced for dataset `lines` (the batch's line i is lines[i]);
    when the whole run failed, each line is failed with the run's error."""
    member = result.members[index] if index < len(result.members) and not result.crashed else None
    if member is None:
        message = redact(result.error or "run failed")
        return [{"line": line, "ok": False, "inputs": inputs.get(line, {}), "outputs": None,
                 "error": message, "latency_s": None, "prompt_tokens": 0, "completion_tokens": 0}
                for line in lines]
    rows = []
    for line in member.lines:
        row = line_row(line)
        row["line"] = lines[line.line] if line.line < len(lines) else line.line
        rows.append(row)
    return rows


def merged(kept: list[dict], fresh: list[dict], retried: set[int]) -> list[dict]:
    """Lines of an earlier run, with the `retried` ones replaced by their fresh results."""
    fresh_by_line = {row["line"]: row for row in fresh if row["line"] in retried}
    rows = [fresh_by_line.pop(row["line"], row) if row["line"] in retried else row for row in kept]
    return sorted(rows + list(fresh_by_line.values()), key=lambda row: row["line"])


def build_record(*, base: dict, rows: list[dict], lines_total: int, completed: bool,
                 duration_s: float, price: tuple[float, float] | None, started_at: float,
                 whole_run_error: str | None = None) -> RunRecord:
    """A record whose counts, tokens, cost, latencies and errors describe `rows`."""
    ok = [row for row in rows if row["ok"]]
    failed = [row for row in rows if not row["ok"]]
    missing = max(0, lines_total - len(rows))  # lines the engine never reported
    errors = [{"line": row["line"], "message": row["error"] or "failed",
               **({"node": row["node"]} if row.get("node") else {})} for row in failed[:MAX_ERRORS_KEPT]]
    if whole_run_error and not errors:
        errors = [{"line": None, "message": redact(whole_run_error)}]
    prompt = sum(row["prompt_tokens"] for row in rows)
    completion = sum(row["completion_tokens"] for row in rows)
    latencies = [row["latency_s"] for row in ok if row["latency_s"] is not None]
    return RunRecord(
        **base, status=STATUS_COMPLETED if completed else "failed",
        lines_total=lines_total, lines_ok=len(ok), lines_failed=len(failed) + missing,
        duration_s=round(duration_s, 3), prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=prompt + completion,
        cost=round((prompt * price[0] + completion * price[1]) / 1000, 6) if price else None,
        latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
        latency_p99_s=percentile(latencies, 99), errors=errors, started_at=started_at,
        finished_at=time.time())
