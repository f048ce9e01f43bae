"""The verdict comment of a pull request: summary.md (leaderboard with intervals, each gate and its
verdict), the safety verdict (the line `genaiops approve` shows), the rows whose score changed
against the baseline, cost and tokens, and a link to the full report, under a hidden marker that
finds the comment again on the next push (`ci.comment.upsert`). The caller redacts it; it holds
nothing but what summary.json holds."""

from __future__ import annotations

from genaiops.evaluation.safety import safety_line, safety_result
from genaiops.evaluation.summary import Summary
from genaiops.reports.markdown import _fmt, _md, render_markdown

MAX_CHANGED_ROWS = 25


def marker(use_case: str) -> str:
    return f"<!-- genaiops:verdict:{use_case} -->"


def _row_scores(summary: Summary, variant: str) -> tuple[dict[str, float | None], str, str] | None:
    """{line: score} of the primary metric's row score for `variant`, with the dataset and score name."""
    primary = summary.evaluation.primary_metric
    if not primary:
        return None
    entry, _ = summary.resolve_metric(variant, primary)
    if entry is None or not entry.row_score:
        return None
    for block in summary.scores:
        if (block.variant, block.dataset, block.evaluator, block.eval_dataset, block.score) == (
                variant, entry.dataset, entry.evaluator, entry.eval_dataset, entry.row_score):
            return block.rows, entry.dataset, f"{entry.evaluator}.{entry.row_score}"
    return None


def changed_rows(summary: Summary, baseline: Summary | None) -> tuple[list[tuple], str]:
    """[(dataset, line, baseline score, candidate score)] of the best variants' primary row scores
    that differ, and a sentence saying what was compared (or why nothing could be)."""
    if baseline is None or summary.baseline is None:
        return [], "no baseline: nothing to compare rows with"
    if not summary.best or not baseline.best:
        return [], "no best variant on one side: rows not compared"
    mine, theirs = _row_scores(summary, summary.best.variant), _row_scores(baseline, baseline.best.variant)
    if mine is None or theirs is None:
        return [], "the primary metric has no per-row scores: rows not compared"
    (rows, dataset, score), (base_rows, base_dataset, _) = mine, theirs
    if dataset != base_dataset or summary.datasets.get(dataset) != baseline.datasets.get(dataset):
        return [], f"dataset {dataset} changed since the baseline: rows not comparable"
    changed = [(dataset, line, base_rows.get(line), rows.get(line))
               for line in sorted(set(rows) | set(base_rows), key=lambda x: (len(x), x))
               if rows.get(line) != base_rows.get(line)]
    return changed, (f"{score} of {summary.best.variant} against the baseline's "
                     f"{baseline.best.variant}, {len(set(rows) & set(base_rows))} paired rows")


def render_comment(summary: Summary, baseline: Summary | None = None, report_url: str | None = None) -> str:
    lines = [marker(summary.use_case), render_markdown(summary).rstrip("\n"), ""]
    lines += [f"**Safety**: {_md(safety_line(safety_result(summary)).removeprefix('safety: '))}", ""]
    changed, compared = changed_rows(summary, baseline)
    lines.append(f"**Changed rows**: {len(changed)} ({_md(compared)})")
    if changed:
        lines += ["", "| dataset | line | baseline | candidate |", "|---|---:|---:|---:|"]
        lines += [f"| {_md(d)} | {_md(line)} | {_fmt(b)} | {_fmt(c)} |" for d, line, b, c in
                  changed[:MAX_CHANGED_ROWS]]
        if len(changed) > MAX_CHANGED_ROWS:
            lines.append(f"\n... and {len(changed) - MAX_CHANGED_ROWS} more in the full report (results.csv)")
    tokens = sum(row.total_tokens for row in summary.leaderboard)
    costs = [row.cost for row in summary.leaderboard if row.cost is not None]
    lines += ["", f"**Cost and tokens**: {tokens} tokens over {len(summary.leaderboard)} variant(s), cost "
                  f"{_fmt(sum(costs)) if costs else '-'}"
                  + (f"; best variant {summary.best.variant}: " + ", ".join(
                      f"{row.total_tokens} tokens, cost {_fmt(row.cost)}" for row in summary.leaderboard
                      if row.variant == summary.best.variant) if summary.best else "")]
    lines += ["", f"Full report: {report_url}" if report_url else "Full report: report.html in the run's "
                                                                   "report artifact", "",
              f"<sub>genaiops, evaluation {_md(summary.id)} of {_md(summary.created_at)}; this comment is "
              "updated on every push.</sub>"]
    return "\n".join(lines) + "\n"
