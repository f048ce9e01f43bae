"""Helpers shared by the deploy, engine and compare tests (a helper module, not a test module): a
private copy of a sample use case, a config edited for one test, and the CLI run in-process like
the console script."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORT = "classification_maf"  # the Agent Framework port of the classification sample
_IGNORE = shutil.ignore_patterns("__pycache__", ".promptflow", "process_log")


def copy_use_case(dest: Path, use_case: str) -> Path:
    for part in ("flows", "datasets", "configs"):
        shutil.copytree(REPO / part / use_case, dest / part / use_case, ignore=_IGNORE)
    return dest


def copy_classification_and_port(dest: Path) -> Path:
    """The classification sample (both flows) and its Agent Framework port's config."""
    copy_use_case(dest, "classification")
    shutil.copytree(REPO / "configs" / PORT, dest / "configs" / PORT, ignore=_IGNORE)
    return dest


@contextlib.contextmanager
def edited(path: Path, old: str, new: str):
    """`path` with `old` replaced by `new` (or `new` appended when `old` is empty), restored after."""
    original = path.read_text()
    assert not old or old in original, f"{old!r} not in {path}"
    path.write_text(original.replace(old, new) if old else original + new)
    try:
        yield path
    finally:
        path.write_text(original)


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
