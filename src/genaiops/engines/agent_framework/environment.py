"""The Agent Framework engine's own Python environment.

agent-framework-core (every release) needs opentelemetry-api>=1.39; promptflow 1.18.5's tracing
needs opentelemetry-sdk<1.39, which pins the api below 1.39. No single environment satisfies
both, so this engine runs its batches and its serving app with a second interpreter: a venv at
`<orchestrator venv>/genaiops-engines/agent_framework` (or `$GENAIOPS_AGENT_FRAMEWORK_PYTHON`),
made by `genaiops engine setup agent_framework` (part of `make setup`) from
`runtime/requirements.txt`. A stamp in it records the requirements' hash and the installed
versions; those versions are part of every run key.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaiops.errors import GenaiopsError
from genaiops.execution.standalone import STANDALONE_DIR
from genaiops.workspace.files import atomic_write_json

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
REQUIREMENTS = RUNTIME_DIR / "requirements.txt"
PYTHON_ENV_VAR = "GENAIOPS_AGENT_FRAMEWORK_PYTHON"
STAMP_NAME = "genaiops-engine.json"
VERSIONED = ("agent-framework-core", "agent-framework-openai", "openai", "starlette", "uvicorn")
SETUP_HINT = "run `genaiops engine setup agent_framework` (part of `make setup`)"

_VERSIONS_SCRIPT = """\
import importlib.metadata as m, json, platform, sys
names = json.loads(sys.argv[1])
print(json.dumps({"python": platform.python_version(),
                  **{n: m.version(n) for n in names}}))
"""


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def requirement_lines() -> list[str]:
    return [line.strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")]


def env_dir() -> Path:
    return Path(sys.prefix) / "genaiops-engines" / "agent_framework"


def python_path() -> Path:
    configured = os.environ.get(PYTHON_ENV_VAR)
    return Path(configured) if configured else env_dir() / "bin" / "python"


def _stamp_path(python: Path) -> Path:
    return python.parent.parent / STAMP_NAME


def status() -> dict[str, Any]:
    """Where the engine's interpreter is and what it has; `ready` only when it matches the
    requirements this genaiops ships."""
    python = python_path()
    info = {"engine": "agent_framework", "python": str(python), "ready": False,
            "requirements": requirement_lines()}
    stamp = _stamp_path(python)
    if not python.is_file():
        return {**info, "problem": f"no interpreter at {python}"}
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {**info, "problem": f"{stamp} is missing or unreadable (environment not set up "
                                   "by genaiops)"}
    if recorded.get("requirements_hash") != requirements_hash():
        return {**info, "versions": recorded.get("versions", {}),
                "problem": "the environment was made for other requirements (genaiops changed)"}
    return {**info, "ready": True, "versions": recorded.get("versions", {})}


def require_ready() -> dict[str, Any]:
    info = status()
    if not info["ready"]:
        raise GenaiopsError(f"the agent_framework engine's Python environment is not ready: "
                            f"{info['problem']}", hint=SETUP_HINT)
    return info


def setup(*, force: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Create (or refresh) the venv from runtime/requirements.txt; a ready one is left alone."""
    progress = progress or (lambda message: None)
    info = status()
    if info["ready"] and not force:
        return {**info, "action": "unchanged"}
    if os.environ.get(PYTHON_ENV_VAR):
        python = python_path()
        if not python.is_file():
            raise GenaiopsError(f"{PYTHON_ENV_VAR} points at {python}, which does not exist",
                                hint="unset it to let genaiops manage the environment")
    else:
        target = env_dir()
        progress(f"creating {target} ...")
        _run([sys.executable, "-m", "venv", "--clear", str(target)], "python -m venv")
        python = target / "bin" / "python"
    progress("installing " + ", ".join(requirement_lines()) + " ...")
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "-r", str(REQUIREMENTS)], "pip install")
    versions = json.loads(_run([str(python), "-c", _VERSIONS_SCRIPT, json.dumps(VERSIONED)],
                               "reading versions"))
    atomic_write_json(_stamp_path(python), {"requirements_hash": requirements_hash(),
                                            "versions": versions})
    return {**status(), "action": "created"}


def _run(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GenaiopsError(f"{what} failed: {exc}", hint="check the Python installation") from None
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.strip().splitlines()[-8:]
                         if not line.startswith("WARNING: Location"))
        raise GenaiopsError(f"{what} failed (exit {done.returncode}): {tail}",
                            hint="check network access to the package index, then retry")
    return done.stdout


def runtime_env() -> dict[str, Any]:
    """Environment for processes of the engine's interpreter: its runtime package importable
    (and genaiops' standard-library-only worker modules, `genaiops_reaper`),
    nothing of the orchestrator's environment leaking in (its allow-listed part only: no audit
    key, no credential the app was not given, `engines.processenv`)."""
    from genaiops.engines.processenv import engine_environment, home_environment

    env = {k: v for k, v in engine_environment(home_environment()).items()
           if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join((str(RUNTIME_DIR), str(STANDALONE_DIR)))
    env["PYTHONNOUSERSITE"] = "1"
    return env
