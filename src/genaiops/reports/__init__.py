"""Evaluation reports, one folder per evaluation: summary.json (machine-readable, also the
baseline format), results.csv, metrics.csv, report.html, junit.xml, summary.md; and the console
view of a summary (`console`). Reports read a typed `Summary` and nothing else of evaluation.
Every file is redacted before it is written."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from genaiops.evaluation.summary import Summary
from genaiops.reports.html import render_html
from genaiops.reports.junit import render_junit
from genaiops.reports.markdown import render_markdown
from genaiops.reports.tables import metrics_csv, results_csv
from genaiops.secrets import Redactor, redact
from genaiops.workspace.files import atomic_write_text

__all__ = ["write_files", "write_reports"]


def write_reports(summary: Summary, folder: Path, hide: Iterable[str] = ()) -> dict[str, Path]:
    """`hide`: values masked like secrets in these files only (planted canaries)."""
    canaries = Redactor()
    canaries.add(*hide)
    files = {
        "summary.json": summary.to_json(),
        "results.csv": results_csv(summary),
        "metrics.csv": metrics_csv(summary),
        "report.html": render_html(summary),
        "junit.xml": render_junit(summary),
        "summary.md": render_markdown(summary),
    }
    return write_files(Path(folder), files, canaries.redact)


def write_files(folder: Path, files: dict[str, str], mask: Callable[[str], str] = str) -> dict[str, Path]:
    """Each report file written atomically into `folder`, known secrets (and `mask`'s) masked."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, text in files.items():
        paths[name] = folder / name
        atomic_write_text(paths[name], mask(redact(text)))
    return paths
