"""The GitHub Actions contract, for pull requests: `.github/workflows/pr.yml` executed the way GitHub
and its runner would (`github_runner.py`: jobs in order, the reusable checks workflow, the matrix,
expressions, the composite setup action, every `run:` step in bash) with the real genaiops against
the LLM simulator and the loopback GitHub fake (`fakes/github.py`), for two pushes to one PR:

1. PR into `development` changing classification's config, nothing deployed yet: only
   classification is validated (the changed use case), without a baseline; the verdict becomes the
   PR's comment and the job summary; parity runs;
2. the deployed version's artifact `deployed-dev-classification` exists (a dev deploy uploaded it)
   and the PR gets another commit: the baseline is downloaded through the artifacts API (its archive
   fetched without the token), the gates compare with it, and the same comment is updated, not
   duplicated.

Each job's GITHUB_TOKEN has exactly the job's `permissions:` (the fake enforces them). A canary LLM
key never reaches a log, the comment or a summary. The release workflow (docker, Azure fakes) is
test_github_release_contract.py. The pytest step of the checks job is not executed (it is this suite).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from fakes.github import OWNER, REPO, FakeGitHub
from github_runner import Event, Runner

from genaiops.reports.comment import marker
from genaiops.simulator import SimulatorServer

pytestmark = [pytest.mark.promptflow, pytest.mark.timeout(900)]  # real promptflow runs: the slow tier

ROOT = Path(__file__).resolve().parents[1]
LLM_KEY = "canary-llm-key-" + os.urandom(6).hex()
AUTHOR = "dana-dev"
SKIPPED = {"Unit and end-to-end tests (pytest)": "it is the suite running this test"}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@contoso.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@contoso.com"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def _origin(root: Path) -> Path:
    """The project's repository: this checkout's files (committed or not) as commit A on both branches."""
    origin = root / "origin"
    origin.mkdir()
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (origin / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, origin / rel)
    _git(origin, "init", "-q", "-b", "main")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "A: the project")
    _git(origin, "branch", "development")
    return origin


def _pull_request(origin: Path, number: int, edit: tuple[str, str, str], message: str) -> Event:
    """A commit on the PR's branch and the merge commit GitHub tests (refs/pull/N/merge)."""
    branch = f"feature/{number}"
    exists = branch in _git(origin, "branch", "--list", branch)
    _git(origin, "checkout", "-q", branch if exists else "-b", *(() if exists else (branch, "development")))
    rel, old, new = edit
    text = (origin / rel).read_text()
    assert old in text
    (origin / rel).write_text(text.replace(old, new, 1))
    _git(origin, "commit", "-qam", message)
    _git(origin, "checkout", "-q", "--detach", "development")
    _git(origin, "merge", "-q", "--no-ff", "-m", f"Merge {branch} into development", branch)
    merge = _git(origin, "rev-parse", "HEAD")
    _git(origin, "update-ref", f"refs/pull/{number}/merge", merge)  # as GitHub keeps it
    _git(origin, "checkout", "-q", "development")
    payload = {"action": "synchronize", "number": number,
               "pull_request": {"number": number, "head": {"ref": branch, "repo": {"full_name": f"{OWNER}/{REPO}"}},
                                "base": {"ref": "development", "repo": {"full_name": f"{OWNER}/{REPO}"}}}}
    return Event("pull_request", merge, f"refs/pull/{number}/merge", payload, AUTHOR, "development", branch)


def _rules() -> dict:
    merged = {"default_reply": "no rule matches", "tables": {}, "rules": []}
    for use_case in ("classification", "qa"):
        data = yaml.safe_load((ROOT / f"configs/{use_case}/simulator.yaml").read_text())
        merged["tables"].update(data.get("tables") or {})
        merged["rules"].extend(data.get("rules") or [])
    return merged


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gh-contract")
    sim = SimulatorServer(rules=_rules(), api_key=LLM_KEY).start()
    github = FakeGitHub().start()
    machine = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "NO_PROXY": "127.0.0.1,localhost",
               "PIP_CONFIG_FILE": os.environ.get("PIP_CONFIG_FILE", "/etc/pip.conf"),
               **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    runner = Runner(origin=_origin(root), github=github,
                    variables={"LLM_API_TYPE": "open_ai", "LLM_API_BASE": f"{sim.url}/v1", "LLM_API_VERSION": "2024-06-01"},
                    secrets={"LLM_API_KEY": LLM_KEY}, machine_env=machine, venv=ROOT / ".venv",
                    workdir=root / "runner", skip_steps=SKIPPED)
    try:
        yield {"runner": runner, "github": github, "origin": runner.origin, "runs": []}
    finally:
        github.stop()
        sim.stop()


def _run(world, event: Event):
    result = world["runner"].run(world["runner"].origin / ".github/workflows/pr.yml", event)
    world["runs"].append(result)
    print(f"\nFIGURES run {result.run_id}: {result.jobs}\n{result.timings()}")
    return result


@pytest.fixture(scope="module")
def first_push(world):
    return _run(world, _pull_request(world["origin"], 7, ("configs/classification/experiment.yaml", "description: >-",
                                                          "description: >-\n  (wording)"), "B: wording"))


def _validate(result) -> str:
    [name] = [n for n in result.jobs if n.startswith("validate")]
    return name


def test_a_pr_validates_the_changed_use_case_and_posts_the_verdict(world, first_push):
    result, github = first_push, world["github"]
    assert result.jobs[_validate(result)] == "success", result.failures()
    assert set(result.jobs) == {"checks", "checks / checks", "checks / changes", "validate (classification)",
                                "parity (classification, classification_maf)"}, result.jobs
    assert all(r == "success" for r in result.jobs.values()), result.failures()
    log = result.output("validate (classification)")
    assert "no artifact deployed-dev-classification yet: evaluating without a baseline" in log
    steps = [entry.step for entry in result.logs if entry.job == "validate (classification)" and entry.result == "success"]
    assert steps.index("Evaluate (pr) and apply quality gates") < steps.index(
        "Verdict comment on the pull request and the job summary")
    [comment] = [c for c in github.comments[7] if marker("classification") in c["body"]]
    assert "genaiops evaluate: classification - PASS" in comment["body"]
    assert "| gate | result | detail |" in comment["body"] and "Changed rows**: 0 (no baseline" in comment["body"]
    assert f"actions/runs/{result.run_id}" in comment["body"]
    assert marker("classification") in result.summaries["validate (classification)"]
    assert "report-pr-classification-1" in result.artifacts and "parity-classification_maf-1" in result.artifacts
    assert result.tokens["validate (classification)"] == {"contents": "read", "actions": "read", "pull-requests": "write"}
    assert result.tokens["checks / changes"] == {"contents": "read"}


@pytest.fixture(scope="module")
def second_push(world, first_push):
    """A dev deploy uploaded `deployed-dev-classification` (the evaluation it released); then the PR
    gets another commit."""
    report = first_push.artifacts["report-pr-classification-1"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(report / "summary.json", "summary.json")
    world["github"].add_artifact("deployed-dev-classification", archive.getvalue(), 6001, "2026-12-06T10:00:00Z")
    world["runner"].skip_steps["Parity ${{ matrix.candidate }} vs ${{ matrix.baseline }}"] = "ran in the first push"
    return _run(world, _pull_request(world["origin"], 7, ("configs/classification/experiment.yaml",
                                                          "(wording)", "(wording, again)"), "C: wording again"))


def test_the_next_push_gates_against_the_deployed_version_and_updates_the_comment(world, second_push):
    result, github = second_push, world["github"]
    assert all(r == "success" for r in result.jobs.values()), result.failures()
    assert "baseline: artifact deployed-dev-classification of run 6001" in result.output("validate (classification)")
    mine = [c for c in github.comments[7] if marker("classification") in c["body"]]
    assert len(mine) == 1 and len(github.comments[7]) == 1  # updated, not duplicated
    body = mine[0]["body"]
    assert f"actions/runs/{result.run_id}" in body and "Baseline:" in body and "paired rows" in body
    assert [r["method"] for r in github.requests if "/issues/" in r["path"] and r["method"] != "GET"] == ["POST", "PATCH"]
    [blob] = github.blob_requests
    assert "Authorization" not in blob["headers"]  # the archive URL never gets the token


def test_no_secret_in_logs_comments_summaries_or_artifacts(world, second_push):
    for result in world["runs"]:
        assert LLM_KEY not in result.output()
        assert all(LLM_KEY not in text for text in result.summaries.values())
        for folder in result.artifacts.values():
            for path in folder.rglob("*"):
                if path.is_file():
                    assert LLM_KEY.encode() not in path.read_bytes(), path
    assert LLM_KEY not in json.dumps(world["github"].comments)
