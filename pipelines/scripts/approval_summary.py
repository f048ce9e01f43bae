"""Turn an evaluation's summary.md into the one-line output variable `text` that the prod approval
(ManualValidation@0 `instructions`) shows: metrics, deltas, gate verdicts and a link to the report.

Pipeline output variables are single-line, so the Markdown is flattened; logging commands inside it
(`##vso[...]`, `##[...]`) are neutralised so report text cannot set variables. Fails when the summary
is missing: nobody should approve a release blind.

    python pipelines/scripts/approval_summary.py --summary report/summary.md --artifact report-prod-x
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

MAX_CHARS = 3000


def flatten(markdown: str, limit: int = MAX_CHARS) -> str:
    parts = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line or re.fullmatch(r"\|?[\s:|-]+\|?", line):  # blank lines, table rules
            continue
        line = re.sub(r"^#+\s*", "", line)  # headings
        line = re.sub(r"\s*\|\s*", " | ", line.strip("|")).strip()
        parts.append(line)
    text = " · ".join(parts)
    text = text.replace("##", "#")  # no logging commands
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_link(artifact: str) -> str:
    collection = os.environ.get("SYSTEM_COLLECTIONURI", "")
    project = os.environ.get("SYSTEM_TEAMPROJECT", "")
    build = os.environ.get("BUILD_BUILDID", "")
    if not (collection and project and build):
        return f"artifact {artifact}"
    return (f"{collection.rstrip('/')}/{project}/_build/results?buildId={build}"
            f"&view=artifacts&type=publishedArtifacts (artifact {artifact})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, required=True, help="summary.md written by genaiops run evaluate")
    parser.add_argument("--artifact", required=True, help="name of the published report artifact")
    parser.add_argument("--variable", default="text", help="output variable name")
    args = parser.parse_args(argv)
    if not args.summary.is_file():
        print(f"##vso[task.logissue type=error]no evaluation summary at {args.summary}", file=sys.stderr)
        return 1
    text = flatten(args.summary.read_text(encoding="utf-8"))
    line = f"{text} · Report: {report_link(args.artifact)}"
    print(f"##vso[task.setvariable variable={args.variable};isOutput=true]{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
