"""The reports of `genaiops monitor`: monitor.json, monitor.md, junit.xml (one case per judged
metric, a failure per drift) and report.html, all through the redactor like every report."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from genaiops.reports import write_files
from genaiops.reports.markdown import _fmt, _md


def _rows(result) -> list[list[str]]:
    return [[c.metric, _fmt(c.value), "-" if c.ci_low is None else f"{_fmt(c.ci_low)}..{_fmt(c.ci_high)}",
             _fmt(c.approved), _fmt(c.margin), c.status, c.message] for c in result.checks]


HEAD = ["metric", "production", "95% CI", "approved", "margin", "status", "why"]


def render_markdown(result) -> str:
    lines = [f"# monitor {result.use_case} -> {result.env}: {result.verdict.upper()}", "",
             f"image `{result.artifact}`, variant `{result.variant}`, {result.requests} request(s) in the last "
             f"{result.since_hours:g}h, {result.sampled} sampled; approved figures from "
             f"`{result.approved_from or 'none'}`", "", _md(result.message), "",
             "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in _rows(result)]
    return "\n".join(lines) + "\n"


def render_junit(result) -> str:
    name = f"genaiops.monitor.{result.use_case}.{result.env}"
    suite = ET.Element("testsuite", name=name)
    failures = 0
    judged = [c for c in result.checks if c.status in ("pass", "drift")]
    for check in judged:
        case = ET.SubElement(suite, "testcase", classname=name, name=f"no drift in {check.metric}")
        if check.status == "drift":
            failures += 1
            ET.SubElement(case, "failure", message=check.message[:500], type="Drift").text = check.message
        else:
            ET.SubElement(case, "system-out").text = check.message
    if result.verdict == "insufficient":
        case = ET.SubElement(suite, "testcase", classname=name, name="enough traffic to judge")
        ET.SubElement(case, "skipped", message=result.message[:500])
    cases = len(judged) + (result.verdict == "insufficient")
    for key, value in (("tests", cases), ("failures", failures), ("errors", 0),
                       ("skipped", int(result.verdict == "insufficient"))):
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="genaiops monitor")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_html(result) -> str:
    esc = html.escape
    cells = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in _rows(result))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>monitor {esc(result.use_case)}</title>"
            f"</head><body><h1>monitor {esc(result.use_case)} &rarr; {esc(result.env)}: "
            f"{esc(result.verdict.upper())}</h1><p>{esc(result.message)}</p><p>image {esc(result.artifact)}, "
            f"variant {esc(result.variant)}, {result.requests} request(s), {result.sampled} sampled</p>"
            "<table border='1'><tr>" + "".join(f"<th>{h}</th>" for h in HEAD) + f"</tr>{cells}</table>"
            "</body></html>\n")


def write_monitor_reports(result, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    files = {"monitor.json": json.dumps(result.to_json(), indent=2, sort_keys=True, default=str) + "\n",
             "monitor.md": render_markdown(result), "junit.xml": render_junit(result),
             "report.html": render_html(result)}
    return write_files(folder, files)
