"""A flow's `requirements.txt` checked against the environment that runs the flow, without
installing or importing anything: each requirement's distribution must be installed there in a
version the requirement allows. Without this, a missing package fails every line at run time
(90 of 90 lines on a missing `bs4`), after the LLM calls were paid for.

Engines call `check_requirements(flow_root, python)`: `python` None is this interpreter (checked
in-process), else the engine's own interpreter, asked once in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS_FILE = "requirements.txt"
_ASK_TIMEOUT_SEC = 30
# prints {name: version or null} for the names in argv, run by the engine's interpreter
_VERSIONS_SCRIPT = """\
import json, sys
from importlib import metadata
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Unmet:
    line: int
    requirement: str  # as written
    found: str | None  # the installed version, None when not installed


@dataclass
class RequirementsCheck:
    """What a flow's requirements.txt asks that the environment running it lacks."""

    file: Path
    python: str  # the interpreter that runs the flow
    unmet: list[Unmet] = field(default_factory=list[Unmet])
    unreadable: list[tuple[int, str]] = field(default_factory=list[tuple[int, str]])  # (line, what is wrong)

    @property
    def install(self) -> str:
        return f"{self.python} -m pip install -r {self.file}"


def check_requirements(flow_root: Path, python: Path | None = None) -> RequirementsCheck | None:
    """None when the flow has no requirements.txt (or the interpreter cannot be asked)."""
    file = Path(flow_root) / REQUIREMENTS_FILE
    if not file.is_file():
        return None
    check = RequirementsCheck(file, str(python or sys.executable))
    wanted: list[tuple[int, str, Requirement]] = []
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        check.unreadable.append((0, f"cannot be read ({exc})"))
        return check
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")) or "://" in line.split("@")[0] or \
                line.startswith((".", "/")):
            continue  # pip options, nested files, local paths and URLs: pip's business
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            check.unreadable.append((number, f"{line!r} is not a requirement pip reads ({exc})"))
            continue
        if requirement.marker is None or requirement.marker.evaluate():
            wanted.append((number, line, requirement))
    versions = _installed({r.name for _, _, r in wanted}, python)
    if versions is None:
        return None
    for number, line, requirement in wanted:
        found = versions.get(requirement.name)
        if found is None or (requirement.specifier and
                             not requirement.specifier.contains(found, prereleases=True)):
            check.unmet.append(Unmet(number, line, found))
    return check


def _installed(names: set[str], python: Path | None) -> dict[str, str | None] | None:
    if not names:
        return {}
    if python is None:
        from importlib import metadata

        found: dict[str, str | None] = {}
        for name in names:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
        return found
    try:
        done = subprocess.run([str(python), "-c", _VERSIONS_SCRIPT, *sorted(names)],
                              capture_output=True, text=True, timeout=_ASK_TIMEOUT_SEC, check=True)
        versions: dict[str, str | None] = json.loads(done.stdout)
        return versions
    except (OSError, subprocess.SubprocessError, ValueError):
        return None  # no engine environment yet: `genaiops engine setup` says so elsewhere
