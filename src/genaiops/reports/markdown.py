"""summary.md: a short verdict for a PR comment or the approval instructions."""

from __future__ import annotations

from genaiops.evaluation.summary import Summary

MAX_FLAKY = 10  # a PR comment stays short; report.html lists them all
ICONS = {"pass": "PASS", "fail": "FAIL", "insufficient": "SKIP (not enough samples)",
         "skipped": "SKIP"}


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _md(text) -> str:
    """Table-safe: pipes and newlines would break the table; angle brackets are escaped too."""
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(summary: Summary) -> str:
    lines = [f"## genaiops evaluate: {summary.use_case} - {(summary.verdict or '?').upper()}", ""]
    if summary.llm.simulator:
        lines += [f"> LLM: {summary.llm.label}. Scores show the pipeline works, "
                  "not model quality.", ""]
    best, primary = summary.best, summary.evaluation.primary_metric
    lines.append(f"Experiment `{summary.experiment_id}`, evaluation `{summary.id}`"
                 f"{', env ' + summary.env if summary.env else ''}"
                 f"{', flow hash `' + summary.flow_hash + '`' if summary.flow_hash else ''}.")
    if summary.checkout_changes:
        lines += ["", f"> **Evaluated experiment `{summary.experiment_id}` as named, not this "
                      f"checkout**: {_md('; '.join(summary.checkout_changes))}."]
    if best:
        lines.append(f"Best variant: **{_md(best.variant)}** ({primary} {_fmt(best.value)}, "
                     f"CI {_fmt(best.ci_low)}..{_fmt(best.ci_high)}; "
                     f"flow hash `{best.flow_hash.split(':')[-1][:12]}`).")
    lines += ["", f"| rank | variant | {_md(primary)} | 95% CI | errors | tokens/line | cost "
                  "| p95 s |", "|---:|---|---:|---|---:|---:|---:|---:|"]
    for row in summary.leaderboard:
        lines.append(f"| {row.rank} | {_md(row.variant)} | {_fmt(row.value)} | "
                     f"{_fmt(row.ci_low)}..{_fmt(row.ci_high)} | {row.lines_failed} | "
                     f"{_fmt(row.tokens_per_line)} | {_fmt(row.cost)} | "
                     f"{_fmt(row.latency_p95_s)} |")
    if summary.gates:
        lines += ["", "| gate | result | detail |", "|---|---|---|"]
        for gate in summary.gates:
            lines.append(f"| {_md(gate.name)} | {ICONS.get(gate.status, gate.status)} | "
                         f"{_md(gate.message)} |")
    if summary.flaky:
        shown = summary.flaky[:MAX_FLAKY]
        more = f"; {MAX_FLAKY} shown, all in report.html" if len(summary.flaky) > MAX_FLAKY else ""
        lines += ["", f"Flaky rows ({len(summary.flaky)}: the verdict varies across repeats{more}):",
                  "", "| variant | score | row | passed |", "|---|---|---:|---:|"]
        lines += [f"| {_md(f.variant)} | {_md(f.evaluator + '.' + f.score)} | {f.row} | "
                  f"{f.passed}/{f.calls} |" for f in shown]
    if summary.problems:
        lines += ["", "Problems:"] + [f"- {_md(p)}" for p in summary.problems]
    if summary.baseline:
        lines += ["", f"Baseline: `{_md(summary.baseline.source)}` (best variant "
                      f"{_md(summary.baseline.variant)})."]
    return "\n".join(lines) + "\n"
