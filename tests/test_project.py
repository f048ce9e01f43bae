"""The command's one `Project`: naming its paths creates nothing, and a command builds one
workspace that every part of it (phase context, registry) shares."""

from __future__ import annotations

import inspect
import os
from functools import cached_property
from pathlib import Path

import pytest
from repo_factory import make_repo

from genaiops.cli import main
from genaiops.project import Project
from genaiops.workspace import Workspace
from genaiops.workspace.repo import ConfigsLayout


def _tree(*roots: Path) -> set[str]:
    return {os.path.join(folder, name) for root in roots for folder, dirs, files in os.walk(root)
            for name in dirs + files}


def _read_everything(obj) -> int:
    """Every property of `obj` read, and every method naming a path called with placeholder
    arguments (a use case, an env, ...); how many were read."""
    read = 0
    for name, member in inspect.getmembers(type(obj)):
        if name.startswith("__") or name in ("ledger", "sweep_abandoned"):
            continue
        if isinstance(member, (property, cached_property)) or (hasattr(type(member), "__get__")
                                                               and not callable(member)):
            getattr(obj, name)
            read += 1
        elif inspect.isfunction(member) and inspect.signature(member).return_annotation in ("Path", Path):
            params = [p for p in inspect.signature(member).parameters.values() if p.name != "self"]
            getattr(obj, name)(*["x"] * len(params))
            read += 1
    return read


def test_building_a_project_and_reading_every_path_creates_nothing(tmp_path, monkeypatch):
    repo, trust = tmp_path / "repo", tmp_path / "trust"
    (repo / "configs").mkdir(parents=True)
    (repo / "flows").mkdir()
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(trust))
    monkeypatch.delenv("GENAIOPS_STATE_DIR", raising=False)
    monkeypatch.delenv("GENAIOPS_WHEEL_CACHE", raising=False)
    before = _tree(tmp_path)

    project = Project.find(repo)
    read = _read_everything(project) + _read_everything(project.workspace) + \
        _read_everything(project.configs)
    project.use_cases()

    assert project.workspace.root == repo.resolve() / ".genaiops"
    assert read >= 30  # the state layout (ledger, evaluations, audit, traces, ...) and configs/
    assert _tree(tmp_path) == before


def test_the_configs_layout_names_each_file_of_a_use_case(tmp_path):
    layout = Project.at(tmp_path).configs
    assert layout == ConfigsLayout(tmp_path.resolve())
    uc = layout.use_case_dir("demo")
    assert layout.experiment("demo") == uc / "experiment.yaml"
    assert layout.experiment("demo", "pr") == uc / "experiment.pr.yaml"
    assert layout.deployment("demo", "dev") == uc / "deployment.dev.yaml"
    assert layout.simulator_rules("demo") == uc / "simulator.yaml"
    make_repo(tmp_path)
    assert layout.use_cases() == ["demo"]


def test_a_read_only_command_in_a_fresh_clone_leaves_no_state_folder(tmp_path, trust_dir, monkeypatch):
    """`audit verify` only reads: before, asking for the audit log's path made `.genaiops/audit/`."""
    monkeypatch.delenv("GENAIOPS_STATE_DIR", raising=False)
    repo = make_repo(tmp_path / "repo")
    before = _tree(repo)
    assert main(["--repo", str(repo), "audit", "verify", "--json"]) == 0
    assert _tree(repo) == before


@pytest.mark.timeout(120)
def test_one_command_builds_one_workspace_shared_by_its_phase_and_registry(tmp_path, state_dir,
                                                                           monkeypatch):
    """`run init` opens the use case's context and its registry: one state folder, decided once
    (before, the context and the local registry each worked it out from the repository)."""
    repo = make_repo(tmp_path / "repo", engine="python")
    built = []
    original = Workspace.for_repo.__func__

    def counted(cls, repo_root):
        built.append(repo_root)
        return original(cls, repo_root)

    monkeypatch.setattr(Workspace, "for_repo", classmethod(counted))
    assert main(["--repo", str(repo), "run", "init", "--use-case", "demo", "--json"]) == 0
    assert built == [repo.resolve()]
    assert (state_dir / "registry" / "catalog.sqlite").is_file()  # the registry is in that workspace
