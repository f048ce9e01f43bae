"""promptflow's `additional_includes`: a DAG that takes files from elsewhere in the repository runs
unchanged, and the included files count in its hash like its own (an edit to one is a new run,
never a reused one). Entries leaving the repository are refused at validate. Real promptflow runs
through the CLI against the simulator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from deploy_helpers import copy_use_case, run_cli, write_overlay

pytestmark = pytest.mark.promptflow


@pytest.fixture
def repo(tmp_path) -> Path:
    """The classification sample with two prompts moved to `flows/shared/` and included."""
    root = copy_use_case(tmp_path / "repo", "classification")
    flow = root / "flows/classification/standard"
    shared = root / "flows/shared/prompts"
    shared.mkdir(parents=True)
    for name in ("summarize_full.jinja2", "summarize_brief.jinja2"):
        shutil.move(flow / name, shared / name)
    dag = yaml.safe_load((flow / "flow.dag.yaml").read_text())
    dag["additional_includes"] = ["../../shared/prompts/summarize_full.jinja2",
                                  "../../shared/prompts/summarize_brief.jinja2"]
    (flow / "flow.dag.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    write_overlay(root, "fast", rows=4)
    return root


def _experiment(repo: Path, capsys) -> tuple[int, dict, str]:
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "classification", "-e",
                              "fast", "--no-progress", "--json"], capsys)
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


def test_a_flow_with_additional_includes_runs_and_its_included_files_count(repo, state_dir, capsys):
    code, out, err = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 0, out + err
    code, first, err = _experiment(repo, capsys)
    assert code == 0, err
    assert first["totals"]["lines_failed"] == 0 and first["totals"]["lines_ok"] > 0 and first["totals"]["reused"] == 0, first["totals"]
    code, again, err = _experiment(repo, capsys)
    assert code == 0 and again["totals"]["reused"] == again["totals"]["runs"], again["totals"]

    included = repo / "flows/shared/prompts/summarize_full.jinja2"
    included.write_text(included.read_text() + "\nBe concise.\n")
    code, edited, err = _experiment(repo, capsys)
    assert code == 0, err
    assert edited["totals"]["reused"] < edited["totals"]["runs"], "an included file's edit was reused"


def test_an_include_outside_the_repository_is_refused_at_validate(repo, tmp_path, capsys):
    outside = tmp_path / "outside.jinja2"
    outside.write_text("secret prompt")
    dag_file = repo / "flows/classification/standard/flow.dag.yaml"
    dag = yaml.safe_load(dag_file.read_text())
    dag["additional_includes"].append(str(Path("../../../..") / "outside.jinja2"))
    dag_file.write_text(yaml.safe_dump(dag, sort_keys=False))
    code, out, err = run_cli(["--repo", str(repo), "validate", "-u", "classification"], capsys)
    assert code == 2, out + err
    assert "additional_includes" in out + err and "outside the repository" in out + err
