"""The GitHub workflows' scripts (.github/scripts/) on their own: the Build job's outputs and the
summary prod reviewers read, and the changed use cases of a push (the pull-request path and the
baseline lookup run in test_github_contract.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_pipeline_scripts import DIGEST, _evidence

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / ".github" / "scripts"


def _script(name: str, args: list[str], tmp_path: Path, env: dict | None = None, cwd: Path | None = None):
    output, summary = tmp_path / "output.txt", tmp_path / "summary.md"
    done = subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, check=False,
                          cwd=cwd, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "src"),
                                        "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), **(env or {})})
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines()) if output.exists() else {}
    return done, outputs, summary.read_text() if summary.exists() else ""


def test_release_summary_gives_the_deploy_jobs_the_digest_and_the_reviewers_what_to_paste(tmp_path):
    done, outputs, summary = _script("release_summary.py", ["--evidence", str(_evidence(tmp_path)),
                                                            "--artifact", "evidence-classification-1"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert outputs == {"digest": DIGEST, "reference": f"myacr.azurecr.io/genaiops/classification@{DIGEST}",
                       "artifact": "evidence-classification-1"}
    assert f"Image digest: `{DIGEST}`" in summary and f"```\n{DIGEST}\n```" in summary
    assert "verdict pass" in summary and "paste this digest into the review comment" in summary


def test_release_summary_refuses_invalid_evidence(tmp_path):
    done, outputs, summary = _script("release_summary.py", ["--evidence", str(_evidence(tmp_path, verdict="maybe")),
                                                            "--artifact", "a"], tmp_path)
    assert done.returncode == 1 and done.stdout.startswith("::error::") and outputs == {} and summary == ""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "D", "GIT_AUTHOR_EMAIL": "d@x", "GIT_COMMITTER_NAME": "D",
           "GIT_COMMITTER_EMAIL": "d@x"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


@pytest.mark.parametrize("changed, expected", [
    ("configs/qa/experiment.yaml", ["qa"]),
    ("configs/other/experiment.yaml", []),
    ("src/genaiops/x.py", ["classification", "qa"]),
])
def test_a_push_runs_the_use_cases_its_commits_changed(tmp_path, changed, expected):
    repo = tmp_path / "repo"
    (repo / "configs" / "qa").mkdir(parents=True)
    (repo / "README").write_text("x")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "A")
    before = _git(repo, "rev-parse", "HEAD")
    (repo / changed).parent.mkdir(parents=True, exist_ok=True)
    (repo / changed).write_text("changed")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "B")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": before}))
    done, outputs, _ = _script("changes.py", ["--use-cases", "classification,qa"], tmp_path,
                               {"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event)}, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert json.loads(outputs["use_cases"]) == expected


def test_a_new_branch_runs_every_use_case(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": "0" * 40}))
    done, outputs, _ = _script("changes.py", ["--use-cases", "classification,qa"], tmp_path,
                               {"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event)}, cwd=tmp_path)
    assert "::warning::cannot tell what changed" in done.stdout
    assert json.loads(outputs["use_cases"]) == ["classification", "qa"]
