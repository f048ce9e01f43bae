"""Symbolic links in flow folders: a link that leaves the repository would copy a host file (a secret,
promptflow's keyring key) into the registry and the serving image. Such links are refused when the
config is loaded (`genaiops validate` and every phase: exit 2, the link named); links that stay in the
repository are read as the regular files they point to; builds copy only regular files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from deploy_helpers import copy_use_case, run_cli

from genaiops.engines.promptflow.flowspec import read_flow
from genaiops.engines.promptflow.staging import copy_flow
from genaiops.errors import UsageError
from genaiops.hashing import hash_tree, snapshot

FLOW = "flows/classification/standard"


@pytest.fixture
def repo(tmp_path) -> Path:
    return copy_use_case(tmp_path / "repo", "classification")


@pytest.fixture
def outside(tmp_path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("host secret\n")
    return secret


@pytest.fixture
def keyring_dir() -> Path:
    """promptflow's keyring folder under this test session's HOME (its key decrypts every connection)."""
    folder = Path(os.path.expanduser("~/.local/share/python_keyring"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("name", ["notes.txt", "keyring"])
@pytest.mark.parametrize("command", [
    ["validate", "-u", "classification"],
    ["run", "experiment", "-u", "classification"],
    ["run", "deploy", "-u", "classification", "-e", "local"],
], ids=["validate", "experiment", "deploy"])
def test_a_link_leaving_the_repo_is_refused_by_every_command(repo, outside, keyring_dir, name, command,
                                                             state_dir, capsys):
    target = {"notes.txt": outside, "keyring": keyring_dir}[name]
    (repo / FLOW / name).symlink_to(target, target_is_directory=target.is_dir())
    code, out, err = run_cli(["--repo", str(repo), *command], capsys)
    text = out + err
    assert code == 2, text
    assert f"{FLOW}/{name}" in text and str(target) in text and "outside the repository" in text
    assert "Traceback" not in text
    assert not list(state_dir.rglob("secret.txt")) and not list(state_dir.rglob("keyring*"))


def test_validate_json_names_the_link_with_file_line_and_fix(repo, outside, capsys):
    (repo / FLOW / "notes.txt").symlink_to(outside)
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification", "--json"], capsys)
    [problem] = json.loads(out)["use_cases"][0]["problems"]
    assert code == 2
    assert problem["file"].endswith("experiment.yaml") and problem["line"] and problem["field"] == "flow"
    assert "symbolic link" in problem["message"] and problem["hint"]


def test_a_dataset_linked_out_of_the_repo_is_refused(repo, outside, capsys):
    dataset = repo / "datasets/classification/tickets.jsonl"
    outside.write_text(dataset.read_text())
    dataset.unlink()
    dataset.symlink_to(outside)
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 2 and "datasets/classification/tickets.jsonl" in out and "outside the repository" in out


def test_an_evaluator_flow_link_is_refused_too(repo, outside, capsys):
    (repo / "flows/classification/evaluation/x.py").symlink_to(outside)
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 2 and "flows/classification/evaluation/x.py" in out


def test_a_nested_link_in_a_linked_folder_is_refused(repo, outside, tmp_path):
    """A folder link inside the repo is followed, and links below it are held to the same rule."""
    shared = repo / "flows/shared"
    shared.mkdir()
    (shared / "leak.txt").symlink_to(outside)
    (repo / FLOW / "shared").symlink_to(shared, target_is_directory=True)
    with pytest.raises(UsageError, match="leak.txt is a symbolic link to .*outside"):
        snapshot(repo / FLOW, boundary=repo)


def test_links_inside_the_repo_are_read_and_copied_as_regular_files(repo, tmp_path, capsys):
    common = repo / "flows/common/labels.txt"
    common.parent.mkdir(parents=True)
    common.write_text("billing\naccount\n")
    (repo / FLOW / "labels.txt").symlink_to(common)
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 0, out
    flow = read_flow(repo / FLOW)
    with pytest.raises(UsageError, match="outside"):  # without the repository as boundary: the flow only
        copy_flow(flow.root, tmp_path / "strict")
    staged = copy_flow(flow.root, tmp_path / "staged", boundary=repo)
    copied = staged / "labels.txt"
    assert copied.is_file() and not copied.is_symlink() and copied.read_text() == "billing\naccount\n"
    assert hash_tree(staged) == hash_tree(repo / FLOW, boundary=repo)


def test_the_flow_folder_itself_may_not_be_a_link_out(repo, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    (repo / FLOW).rename(elsewhere)
    (repo / FLOW).symlink_to(elsewhere, target_is_directory=True)
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 2 and "outside the repository" in out


def test_additional_includes_are_refused(repo, capsys):
    dag = repo / FLOW / "flow.dag.yaml"
    dag.write_text(dag.read_text() + "additional_includes:\n  - /etc\n")
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 2 and "additional_includes" in out


def test_serving_bundle_copies_only_regular_files(tmp_path, outside):
    from genaiops.workspace.safecopy import copy_regular_tree

    source = tmp_path / "build" / "flow"
    source.mkdir(parents=True)
    (source / "flow.dag.yaml").write_text("nodes: []\n")
    copy_regular_tree(source, tmp_path / "bundle" / "flow")
    assert (tmp_path / "bundle/flow/flow.dag.yaml").is_file()
    (source / "notes.txt").symlink_to(outside)
    with pytest.raises(UsageError, match="notes.txt is a symbolic link"):
        copy_regular_tree(source, tmp_path / "bundle2" / "flow")
    assert not (tmp_path / "bundle2" / "flow" / "notes.txt").exists()


@pytest.mark.promptflow
def test_links_validate_accepts_are_followed_by_experiment_and_evaluate(repo, capsys):
    """A link inside the repository that `validate` accepts (here: the evaluation flow's grader and
    the flow's prompt, both shared from `flows/common/`) is read as its file by every phase: the
    evaluation flow, too, runs from a copy whose boundary is the repository, not its own folder."""
    from deploy_helpers import use_small_pr_overlay

    use_small_pr_overlay(repo)
    common = repo / "flows/common"
    common.mkdir(parents=True)
    for shared in (repo / "flows/classification/evaluation/grade.py", repo / FLOW / "classify_terse.jinja2"):
        if not shared.exists():
            continue
        moved = common / shared.name
        shared.rename(moved)
        shared.symlink_to(os.path.relpath(moved, shared.parent))
    links = [p for p in (repo / "flows/classification").rglob("*") if p.is_symlink()]
    assert links, "the sample has none of the files this test links"
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 0, out
    code, out, err = run_cli(["--repo", str(repo), "run", "init", "-u", "classification", "-e", "pr",
                              "--no-progress"], capsys)  # registers the flows, links read as files
    assert code == 0, out + err
    code, out, err = run_cli(["--repo", str(repo), "run", "verdict", "-u", "classification", "-e", "pr",
                              "--no-progress"], capsys)
    assert code == 0, out + err
    assert "verdict: PASS" in out
    assert all(link.is_symlink() for link in links)  # the repository is left as it was
