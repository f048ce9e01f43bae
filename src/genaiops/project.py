"""One flow repository as a command sees it: its root, its `configs/` layout, its state folder
(`Workspace`), its registries and its engines. The CLI builds one `Project` per command
(`cli.options.project`) and passes it down; phases get it from their `PhaseContext`, so nothing
else works out where the repository or its state folder is (DVC's `Repo` plays this part there).

It lives at the top of the package, not in `workspace/`, because it composes packages that sit
above the workspace (the registry and the engines import `workspace`; a `Project` inside it would
close that circle). Building one and reading its properties creates no file or folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from genaiops.workspace import Workspace
from genaiops.workspace.repo import ConfigsLayout, find_repo_root, repo_from_flag

if TYPE_CHECKING:
    from genaiops.config.model import ExperimentConfig
    from genaiops.engines.base import Engine
    from genaiops.registry.base import Registry


@dataclass(frozen=True)
class Project:
    root: Path  # the repository root (resolved)

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Project:
        """The repository at `root`, taken as given (library callers and tests)."""
        return cls(Path(root).expanduser().resolve())

    @classmethod
    def find(cls, flag: str | os.PathLike[str] | None = None) -> Project:
        """The repository a command names: `--repo` (it must hold configs/), else
        `$GENAIOPS_REPO`, else the nearest folder at or above here with configs/ and flows/;
        a UsageError (exit 2) saying how to point at one otherwise."""
        return cls(repo_from_flag(flag) if flag else find_repo_root())

    @property
    def configs(self) -> ConfigsLayout:
        """Where the use cases' config files are (`configs/<uc>/experiment.yaml`, overlays, ...)."""
        return ConfigsLayout(self.root)

    @cached_property
    def workspace(self) -> Workspace:
        """The state folder (`$GENAIOPS_STATE_DIR`, else `<root>/.genaiops`), decided once."""
        return Workspace.for_repo(self.root)

    def use_cases(self) -> list[str]:
        return self.configs.use_cases()

    def load_experiment(self, use_case: str, env: str | None = None,
                        llm: str | None = None) -> ExperimentConfig:
        """A use case's experiment config (+ the `env` overlay), with the `--llm` mode applied."""
        from genaiops.config import load_experiment

        return load_experiment(self.root, use_case, env).with_llm_mode(llm)

    def registry(self, kind: str = "local", settings: dict | None = None) -> Registry:
        """The registry backend `kind` (`--registry`, or a config's `registry.backend`)."""
        from genaiops.registry import open_registry

        return open_registry(kind, self.workspace, settings)

    def engine(self, config: ExperimentConfig, runner=None) -> Engine:
        """The engine a use case's config names, opened for it (the caller closes it)."""
        from genaiops.engines import engine_for

        return engine_for(config, runner)


__all__ = ["Project"]
