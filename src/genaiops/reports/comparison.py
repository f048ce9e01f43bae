"""Reports of a parity comparison (`genaiops compare`), the same forms as an evaluation's:
comparison.json, changed_rows.csv (the per-row diff), comparison.md, junit.xml (one test case
per compared metric: the pipeline gate), report.html; and the console view. They read a typed
`Comparison` only, and every file is redacted before it is written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from genaiops.evaluation.comparison import Comparison
from genaiops.reports import write_files
from genaiops.reports.html import _env
from genaiops.reports.markdown import _fmt, _md
from genaiops.reports.tables import _cell, _csv

MAX_HTML_ROWS = 500
ICONS = {"pass": "PASS", "fail": "FAIL", "insufficient": "FAIL (not enough evidence)"}


def _signed(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}g}"


def _simulator(comparison: Comparison) -> bool:
    return comparison.baseline.llm.simulator or comparison.candidate.llm.simulator


def render_html(comparison: Comparison) -> str:
    env = _env()
    env.filters["signed"] = _signed
    return env.get_template("comparison.html.jinja2").render(
        c=comparison, shown=comparison.rows_changed[:MAX_HTML_ROWS],
        simulator=_simulator(comparison))


def changed_rows_csv(comparison: Comparison) -> str:
    rows = comparison.rows_changed
    scores = sorted({name for r in rows for side in (r.baseline, r.candidate) for name in side.scores})
    header = ["dataset", "line", "change", "inputs", "baseline_outputs", "candidate_outputs",
              "baseline_error", "candidate_error"]
    header += [f"{side}_{name}" for name in scores for side in ("baseline", "candidate")]
    body = [[r.dataset, r.line, r.change, _cell(r.inputs), _cell(r.baseline.outputs),
             _cell(r.candidate.outputs), _cell(r.baseline.error), _cell(r.candidate.error),
             *[_cell(side.scores.get(name)) for name in scores
               for side in (r.baseline, r.candidate)]] for r in rows]
    return _csv(header, body)


def render_markdown(comparison: Comparison) -> str:
    c = comparison
    lines = [f"## genaiops compare: {c.candidate.use_case} vs {c.baseline.use_case} - "
             f"{c.verdict.upper()}", ""]
    if _simulator(c):
        lines += ["> LLM: at least one side ran against the bundled LLM SIMULATOR (not a real "
                  "model): the verdict shows the comparison works, not model quality.", ""]
    for role, side in (("Baseline", c.baseline), ("Candidate", c.candidate)):
        lines.append(f"{role}: `{_md(side.use_case)}` on **{side.engine}** ({_md(side.flow)}, "
                     f"variant {_md(side.variant)}, flow hash `{side.flow_hash.split(':')[-1][:12]}`).")
    lines += ["", f"Non-inferiority margin {_fmt(c.margin)} at {c.confidence:.0%} confidence "
                  f"(minimum {c.min_samples} paired rows).", "",
              "| metric | result | baseline | candidate | change | CI of change | test | p | pairs "
              "| worse / better |", "|---|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for m in c.metrics:
        lines.append(f"| {_md(m.metric)} | {ICONS[m.status]} | {_fmt(m.baseline.value)} | "
                     f"{_fmt(m.candidate.value)} | {_signed(m.delta)} | "
                     f"{_signed(m.ci_low)}..{_signed(m.ci_high)} | {m.method} | "
                     f"{_fmt(m.p_value, 3)} | {m.n} | {m.worse} / {m.better} |")
    lines += [""] + [f"- {_md(m.message)}" for m in c.metrics]
    if c.problems:
        lines += ["", "Problems:"] + [f"- {_md(p)}" for p in c.problems]
    lines += ["", f"{len(c.rows_changed)} of {c.rows_total} rows changed (outputs, scores or "
                  "errors): see changed_rows.csv."]
    return "\n".join(lines) + "\n"


def render_junit(comparison: Comparison) -> str:
    c = comparison
    name = f"genaiops.compare.{c.candidate.use_case}"
    suite = ET.Element("testsuite", name=name, timestamp=c.created_at, time=str(c.duration_s or 0))
    failures = 0
    cases = [(f"parity {m.metric} (margin {m.margin:g})", m.status != "pass", m.message)
             for m in c.metrics]
    cases += [("same datasets and evaluators", bool(c.problems), "\n".join(c.problems) or "ok")]
    for title, failed, message in cases:
        case = ET.SubElement(suite, "testcase", classname=name, name=title)
        if failed:
            failures += 1
            failure = ET.SubElement(case, "failure", message=message[:500], type="ParityFailed")
            failure.text = message
        else:
            ET.SubElement(case, "system-out").text = message
    for key, value in (("tests", len(cases)), ("failures", failures), ("errors", 0), ("skipped", 0)):
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="genaiops compare", tests=str(len(cases)),
                      failures=str(failures), errors="0", skipped="0")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_comparison_reports(comparison: Comparison, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    files = {"comparison.json": comparison.to_json(), "changed_rows.csv": changed_rows_csv(comparison),
             "comparison.md": render_markdown(comparison), "junit.xml": render_junit(comparison),
             "report.html": render_html(comparison)}
    return write_files(folder, files)


def console_lines(comparison: Comparison, table) -> list[tuple[str, str]]:
    """(stream, text): failures on stderr, the rest on stdout."""
    c = comparison
    lines = []
    if _simulator(c):
        lines.append(("out", "LLM: bundled LLM SIMULATOR (loopback, deterministic rules, not a "
                             "real model) on at least one side"))
    lines.append(("out", table([{"side": role, "use case": s.use_case, "engine": s.engine,
                                  "variant": s.variant, "own gates": (s.verdict or "-").upper()}
                                 for role, s in (("baseline", c.baseline),
                                                 ("candidate", c.candidate))])))
    lines.append(("out", table([{"metric": m.metric, "baseline": _fmt(m.baseline.value),
                                  "candidate": _fmt(m.candidate.value), "change": _signed(m.delta),
                                  f"{c.confidence:.0%} CI": f"{_signed(m.ci_low)}..{_signed(m.ci_high)}",
                                  "margin": f"-{m.margin:g}", "test": m.method,
                                  "p": _fmt(m.p_value, 3), "pairs": m.n,
                                  "worse/better": f"{m.worse}/{m.better}"} for m in c.metrics])))
    lines += [("err" if m.status != "pass" else "out",
               f"parity {ICONS[m.status]:<5} {m.metric}: {m.message}") for m in c.metrics]
    lines += [("err", f"problem: {p}") for p in c.problems]
    lines.append(("out", f"{len(c.rows_changed)} of {c.rows_total} rows changed"))
    if c.report_dir:
        lines.append(("out", f"reports: {c.report_dir}"))
    lines.append(("out", f"verdict: {c.verdict.upper()}"))
    return lines
