"""The console view of a summary: which lines to show and on which stream.

Failures (problems, failed gates) go to stderr so a CI log highlights them; everything else to
stdout. Printing (and redaction) stays with the caller; so does the look of a text table, passed
in as `table` so the leaderboard matches the CLI's other tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

from genaiops.evaluation.summary import Summary


class ConsoleLine(NamedTuple):
    stream: Literal["out", "err"]
    text: str


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def console_lines(summary: Summary, table: Callable[[list[dict]], str]) -> list[ConsoleLine]:
    lines = []
    if summary.llm.simulator:
        lines.append(ConsoleLine("out", f"LLM: {summary.llm.label}"))
    primary = summary.evaluation.primary_metric or "primary"
    lines.append(ConsoleLine("out", table([
        {"#": r.rank, "variant": r.variant, primary: _fmt(r.value),
         "CI": f"{_fmt(r.ci_low)}..{_fmt(r.ci_high)}", "nan": r.n_nan, "err": r.n_error,
         "failed lines": r.lines_failed, "tokens/line": _fmt(r.tokens_per_line),
         "cost": _fmt(r.cost), "p95 s": _fmt(r.latency_p95_s)} for r in summary.leaderboard])))
    reused = sum(1 for e in summary.evaluations if e.reused)
    lines.append(ConsoleLine("out", f"evaluation {summary.id}: {len(summary.evaluations)} "
                                    f"evaluation run(s), {reused} reused; "
                                    f"best: {summary.candidate or '-'}"))
    if summary.flow_hash:
        lines.append(ConsoleLine("out", f"flow hash evaluated: {summary.flow_hash}"))
    if summary.checkout_changes:
        lines.append(ConsoleLine("err", f"note: experiment {summary.experiment_id} was evaluated as "
                                        "named, not this checkout: " + "; ".join(summary.checkout_changes)))
    lines += [ConsoleLine("err", f"problem: {problem}") for problem in summary.problems]
    lines += [ConsoleLine("err" if gate.status == "fail" else "out",
                          f"gate {gate.status.upper():<12} {gate.name}: {gate.message}")
              for gate in summary.gates]
    if summary.report_dir:
        lines.append(ConsoleLine("out", f"reports: {summary.report_dir}"))
    lines.append(ConsoleLine("out", f"verdict: {(summary.verdict or '?').upper()}"))
    return lines
