"""Load a use case's config: base file, environment overlay, `${env:}` values, validation, typed model."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from genaiops.config.environments import require_declared
from genaiops.config.filemodel import ENV_NAME, LoadContext
from genaiops.config.layered import build, read_checked
from genaiops.config.model import ExperimentConfig
from genaiops.config.semantics import check
from genaiops.errors import ConfigError, Problem, UsageError
from genaiops.workspace.repo import EXPERIMENT_FILE, ConfigsLayout

BASE_FILE = EXPERIMENT_FILE


def list_use_cases(repo_root: Path) -> list[str]:
    return ConfigsLayout(repo_root).use_cases()


def overlay_path(repo_root: Path, use_case: str, env: str) -> Path:
    return ConfigsLayout(repo_root).experiment(use_case, env)


def load_experiment(repo_root: Path, use_case: str, env: str | None = None,
                    *, environ: dict | None = None) -> ExperimentConfig:
    """Raises ConfigError listing every problem found (file, line, field, fix)."""
    repo_root = Path(repo_root).resolve()
    available = list_use_cases(repo_root)
    if use_case not in available:
        raise UsageError(f"unknown use case {use_case!r}",
                         hint=f"use one of: {', '.join(available) or '(none yet: genaiops new <name>)'}")
    if env is not None and not re.match(ENV_NAME, env):
        raise UsageError(f"invalid environment name {env!r}", hint="use lowercase letters, digits, - or _")
    if env is not None:
        require_declared(repo_root, use_case, env)

    data, sources, files = read_checked(
        ExperimentConfig, ConfigsLayout(repo_root).experiment(use_case),
        overlay_path(repo_root, use_case, env) if env else None, repo_root,
        "start the file with `name: <use_case>`", environ)
    context = LoadContext(repo_root, use_case, env, tuple(files))
    # semantics checks the model (its defaults) and reads the flows; the config keeps their specs
    problems, flows = check(build(ExperimentConfig, data, sources, context), sources)
    if problems:
        raise ConfigError(problems)
    if data["name"] != use_case:
        file, line = sources.locate(("name",))
        raise ConfigError([Problem(file, line, "name", f"name {data['name']!r} differs from the "
                                   f"use case folder {use_case!r}", f"set name: {use_case}")])
    return build(ExperimentConfig, data, sources, replace(context, flows=flows))
