"""Helpers shared by the deploy tests: a private copy of a sample use case, and the CLI with the
deploy commands wired in (whether or not cli.py already calls add_deploy_parsers)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_use_case(dest: Path, use_case: str) -> Path:
    for part in ("flows", "datasets", "configs"):
        shutil.copytree(REPO / part / use_case, dest / part / use_case,
                        ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
    return dest


def _wired_parser(build):
    from genaiops.cli.deploy import add_deploy_parsers

    parser = build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "approve" not in sub.choices:
        run = sub.choices["run"]
        phases = next(a for a in run._actions if isinstance(a, argparse._SubParsersAction))
        add_deploy_parsers(sub, phases)
    return parser


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `genaiops argv...`, run in-process like the console script."""
    from genaiops import cli

    original = cli.build_parser
    cli.build_parser = lambda: _wired_parser(original)
    try:
        capsys.readouterr()
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    finally:
        cli.build_parser = original
    captured = capsys.readouterr()
    return code, captured.out, captured.err
