"""Helpers shared by the deploy tests (a helper module, not a test module): a private copy of a
sample use case, and the CLI run in-process like the console script."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_use_case(dest: Path, use_case: str) -> Path:
    for part in ("flows", "datasets", "configs"):
        shutil.copytree(REPO / part / use_case, dest / part / use_case,
                        ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
    return dest


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `genaiops argv...`, run in-process like the console script."""
    from genaiops.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
