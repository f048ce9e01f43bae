"""The engine protocol, checked by a type checker: pyright (strict for `engines/base.py`, the python
engine and `engines/childproc.py`: [tool.pyright] in pyproject.toml) finds no error there, and every
adapter that declares it implements `Engine` (the built-in ones and the fixture's fourth engine)
conforms to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYRIGHT = shutil.which("pyright", path=str(Path(sys.executable).parent))


def pyright(*paths: str) -> dict:
    if PYRIGHT is None:
        pytest.skip("pyright is not installed (pip install -e '.[dev]')")
    done = subprocess.run([PYRIGHT, "--outputjson", *paths], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    return json.loads(done.stdout)


def test_the_protocol_and_the_python_engine_are_strict_clean_and_adapters_conform():
    report = pyright("src/genaiops/engines/base.py", "src/genaiops/engines/python",
                     "src/genaiops/engines/childproc.py", "src/genaiops/engines/__init__.py",
                     "src/genaiops/engines/promptflow/__init__.py",
                     "src/genaiops/engines/agent_framework/__init__.py",
                     "tests/fixtures/engines/toy_engine.py")
    errors = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == []
    assert report["summary"]["filesAnalyzed"] >= 10


def test_an_adapter_that_breaks_the_protocol_is_found(tmp_path):
    broken = ROOT / "tests" / "fixtures" / "engines" / f"broken_{tmp_path.name}.py"
    broken.write_text("from pathlib import Path\n\nfrom genaiops.engines.base import Engine, FlowSpec\n\n\n"
                      "class Broken(Engine):\n"
                      "    def read_flow(self, path: Path, strict: bool) -> FlowSpec:\n"
                      "        raise NotImplementedError\n")
    try:
        report = pyright(str(broken.relative_to(ROOT)))
    finally:
        broken.unlink()
    assert any("read_flow" in d["message"] and d["severity"] == "error"
               for d in report["generalDiagnostics"])
