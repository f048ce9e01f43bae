"""The flow repository: where its root is, which paths stay inside it, and its `configs/` layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genaiops.errors import UsageError

CONFIGS_DIR = "configs"
EXPERIMENT_FILE, DEPLOYMENT_FILE = "experiment.yaml", "deployment.yaml"
SIMULATOR_FILE, SAMPLE_REQUEST_FILE = "simulator.yaml", "sample-request.json"


@dataclass(frozen=True)
class ConfigsLayout:
    """Where a use case's files sit under `configs/` (the one place that joins those paths):

        configs/<uc>/experiment.yaml, experiment.<env>.yaml    the experiment config + overlays
        configs/<uc>/deployment.yaml, deployment.<env>.yaml    the deployment config + overlays
        configs/<uc>/simulator.yaml                            the LLM simulator's rules
        configs/<uc>/sample-request.json                       the default smoke request

    Naming a path reads and creates nothing. `genaiops.project.Project.configs` is the command's."""

    repo_root: Path

    @property
    def folder(self) -> Path:
        return Path(self.repo_root) / CONFIGS_DIR

    def use_case_dir(self, use_case: str) -> Path:
        return self.folder / use_case

    def experiment(self, use_case: str, env: str | None = None) -> Path:
        """`experiment.yaml`, or with `env` its overlay `experiment.<env>.yaml`."""
        return self.use_case_dir(use_case) / (f"experiment.{env}.yaml" if env else EXPERIMENT_FILE)

    def deployment(self, use_case: str, env: str | None = None) -> Path:
        """`deployment.yaml`, or with `env` its overlay `deployment.<env>.yaml`."""
        return self.use_case_dir(use_case) / (f"deployment.{env}.yaml" if env else DEPLOYMENT_FILE)

    def simulator_rules(self, use_case: str) -> Path:
        return self.use_case_dir(use_case) / SIMULATOR_FILE

    @staticmethod
    def sample_request_rel(use_case: str) -> str:
        """The default smoke request, relative to the repository (as a config would write it)."""
        return f"{CONFIGS_DIR}/{use_case}/{SAMPLE_REQUEST_FILE}"

    def use_cases(self, having: str = EXPERIMENT_FILE) -> list[str]:
        """The use cases (folders under configs/) holding a file named `having`, sorted."""
        return sorted(path.parent.name for path in self.folder.glob(f"*/{having}"))


def repo_from_flag(value: str | os.PathLike, source: str = "--repo") -> Path:
    root = Path(value).expanduser().resolve()
    if not ConfigsLayout(root).folder.is_dir():
        raise UsageError(f"{source} {value} has no configs/ folder",
                         hint="point it at a flow repository (the folder holding configs/ and flows/)")
    return root


def find_repo_root(start: Path | None = None) -> Path:
    """The flow repository: `$GENAIOPS_REPO`, else the nearest ancestor holding `configs/` and `flows/`."""
    env = os.environ.get("GENAIOPS_REPO")
    if env:
        return repo_from_flag(env, "GENAIOPS_REPO")
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if ConfigsLayout(candidate).folder.is_dir() and (candidate / "flows").is_dir():
            return candidate
    raise UsageError(
        f"no flow repository found at or above {here} (looked for configs/ and flows/)",
        hint="run genaiops inside the repository, or pass --repo PATH",
    )


def resolve_inside(repo_root: Path, relative: str | os.PathLike[str]) -> Path | None:
    """`relative` resolved against the repo, or None when it escapes the repo (`..`, absolute, symlink)."""
    candidate = Path(relative)
    full = (candidate if candidate.is_absolute() else repo_root / candidate).resolve()
    try:
        full.relative_to(repo_root.resolve())
    except ValueError:
        return None
    return full
