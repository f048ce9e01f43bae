"""Which environments a use case declares, so `-e prd` is a typo and not a silent run of the
base config: its overlays (`experiment.<env>.yaml`), the `environments:` of `deployment.yaml`
(and its `deployment.<env>.yaml` overlays), and an optional `environments:` list in
`experiment.yaml` for environments that need neither.

Declarations are read as plain YAML keys: a file that does not parse declares nothing here (its
own loader reports it with file and line when a command uses it).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from genaiops.errors import UsageError
from genaiops.workspace.repo import DEPLOYMENT_FILE, EXPERIMENT_FILE, ConfigsLayout


def _overlay_envs(folder: Path, stem: str) -> set[str]:
    return {path.name[len(stem) + 1:-len(".yaml")] for path in folder.glob(f"{stem}.*.yaml")}


def _yaml_mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def overlay_environments(repo_root: Path, use_case: str) -> list[str]:
    """Environments with an `experiment.<env>.yaml` overlay, sorted."""
    return sorted(_overlay_envs(ConfigsLayout(Path(repo_root)).use_case_dir(use_case), "experiment"))


def declared_environments(repo_root: Path, use_case: str) -> list[str]:
    folder = ConfigsLayout(Path(repo_root)).use_case_dir(use_case)
    names = _overlay_envs(folder, "experiment") | _overlay_envs(folder, "deployment")
    deployment = _yaml_mapping(folder / DEPLOYMENT_FILE).get("environments")
    if isinstance(deployment, dict):
        names |= {str(name) for name in deployment}
    listed = _yaml_mapping(folder / EXPERIMENT_FILE).get("environments")
    if isinstance(listed, list):
        names |= {str(name) for name in listed}
    return sorted(names)


def require_declared(repo_root: Path, use_case: str, env: str) -> None:
    """UsageError (exit 2) naming the nearest declared environment when `env` is not one."""
    known = declared_environments(repo_root, use_case)
    if env in known:
        return
    nearest = difflib.get_close_matches(env, known, n=1, cutoff=0.5)
    guess = f"did you mean {nearest[0]!r}? " if nearest else ""
    raise UsageError(
        f"unknown environment {env!r} for use case {use_case!r}",
        hint=f"{guess}declared: {', '.join(known) or '(none)'}; declare a new one with "
             f"configs/{use_case}/experiment.{env}.yaml, under `environments:` in "
             f"{DEPLOYMENT_FILE}, or in the `environments:` list of {EXPERIMENT_FILE}")
