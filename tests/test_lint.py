"""The PR pipeline lints with ruff; the suite does too, so a lint failure shows up locally first."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    if shutil.which("ruff", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("ruff is not installed in this environment (pip install -e '.[dev]')")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
