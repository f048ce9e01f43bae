"""The engine protocol, checked by a type checker: pyright in strict mode finds no error in all of
`engines/` ([tool.pyright] in pyproject.toml; the Agent Framework runtime is left out: it runs in the
app's own environment and imports agent_framework and uvicorn, which this one lacks), and every
adapter that declares it implements `Engine` (the built-in ones and the fixture's fourth engine)
conforms to it."""

from __future__ import annotations

import json
import os
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
    # the project's own settings, named: a pyrightconfig.json in a folder above would win otherwise
    done = subprocess.run([PYRIGHT, "--outputjson", "--project", str(ROOT / "pyproject.toml"), *paths],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    return json.loads(done.stdout)


def test_the_engines_package_is_strict_clean_and_adapters_conform():
    report = pyright("src/genaiops/engines", "tests/fixtures/engines/toy_engine.py")
    errors = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == []
    analyzed = report["summary"]["filesAnalyzed"]
    engines = ROOT / "src" / "genaiops" / "engines"
    runtime = engines / "agent_framework" / "runtime"
    checked = [p for p in engines.rglob("*.py") if runtime not in p.parents]
    assert analyzed >= len(checked) + 1  # every module of engines/ but the AF runtime, and the toy


def test_strict_mode_covers_every_engine_module():
    """A module added to engines/ is strict-checked without anyone listing it (its rules are the
    strict ones: an untyped parameter there is an error)."""
    probe = ROOT / "src" / "genaiops" / "engines" / f"probe_{os.getpid()}.py"
    probe.write_text("def untyped(value):\n    return value\n", encoding="utf-8")
    try:
        report = pyright(str(probe.relative_to(ROOT)))
    finally:
        probe.unlink()
    assert any(d.get("rule") == "reportMissingParameterType" for d in report["generalDiagnostics"])


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
