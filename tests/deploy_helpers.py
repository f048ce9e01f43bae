"""Helpers shared by tests (a helper module, not a test module): a private copy of a sample use case
(and the Agent Framework port's config), an overlay with its own dataset and runtime, a config
edited for one test, and the CLI run in-process like the console script."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORT = "classification_maf"  # the Agent Framework port of the classification sample
_IGNORE = shutil.ignore_patterns("__pycache__", ".promptflow", "process_log")


def copy_use_case(dest: Path, use_case: str) -> Path:
    """The sample's flows, datasets and configs, and the attack pack and its detector that its dev
    overlay evaluates (experiment.dev.yaml)."""
    for part in ("flows", "datasets", "configs"):
        shutil.copytree(REPO / part / use_case, dest / part / use_case, ignore=_IGNORE)
    for shared in ("datasets/safety", "evaluators/safety"):
        if not (dest / shared).exists():
            shutil.copytree(REPO / shared, dest / shared, ignore=_IGNORE)
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


def write_overlay(root: Path, env: str, *, rows: int | None = None, worker_count: int = 2,
                  max_parallel: int = 1, tolerance: int = 0, attempts: int = 1) -> Path:
    """configs/classification/experiment.<env>.yaml: the tickets dataset (its first `rows` rows),
    no evaluators, and this runtime."""
    source = "datasets/classification/tickets.jsonl"
    if rows is not None:
        lines = (root / source).read_text().splitlines()[:rows]
        source = f"datasets/classification/tickets_{rows}.jsonl"
        (root / source).write_text("\n".join(lines) + "\n")
    path = root / f"configs/classification/experiment.{env}.yaml"
    path.write_text(f"""\
datasets:
  - name: tickets
    source: {source}
    mappings: {{text: "${{data.text}}"}}
evaluators: []
runtime:
  worker_count: {worker_count}
  max_parallel: {max_parallel}
  line_timeout_sec: 60
  failed_line_tolerance: {tolerance}
  retries: {{max_attempts: {attempts}, backoff_sec: 0.1}}
""")
    return path


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


def docker_mark(reason: str | None):
    """The skip marker of a docker test module. With GENAIOPS_REQUIRE_DOCKER=1 (the pipeline's Checks
    stage, which set docker up first) a missing daemon or base image is an error, not a silent skip."""
    import os

    import pytest

    if reason is not None and os.environ.get("GENAIOPS_REQUIRE_DOCKER") == "1":
        pytest.fail(f"docker: {reason}, and GENAIOPS_REQUIRE_DOCKER=1 says these tests must run", pytrace=False)
    return pytest.mark.skipif(reason is not None, reason=f"docker: {reason}")


SMALL_PR_OVERLAY = """\
# the 10-row PR smoke set, for tests that need a small, fast overlay (the sample's `pr` overlay
# evaluates the rows dev's baseline holds, so its regression gate can be judged)
datasets:
  - name: tickets_pr
    source: datasets/classification/tickets_pr.jsonl
    description: 10 labelled tickets, 2 per category (PR smoke set)
    mappings:
      text: ${data.text}
evaluators:
  - name: accuracy
    flow: flows/classification/evaluation
    datasets:
      - name: tickets_pr_eval
        reference: tickets_pr
        mappings:
          groundtruth: ${data.label}
          prediction: ${run.outputs.category}
"""


def use_small_pr_overlay(root: Path, use_case: str = "classification") -> Path:
    """Make a copied repo's `pr` overlay of the classification sample the 10-row smoke set."""
    path = root / f"configs/{use_case}/experiment.pr.yaml"
    path.write_text(SMALL_PR_OVERLAY)
    return path
