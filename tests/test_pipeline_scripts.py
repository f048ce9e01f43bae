"""The pipeline's helper scripts (pipelines/scripts/), run as the agent runs them - a subprocess with
the agent's predefined variables - against the loopback Azure DevOps fake and real git repositories:
which use cases changed, where the deployed version's evaluation is, what the approver reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.ado import DEFINITION_ID, PROJECT, FakeAzureDevOps

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "pipelines" / "scripts"
DIGEST = "sha256:" + "a" * 64


def _script(name: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                          check=False, env={"PATH": os.environ["PATH"], **env}, cwd=env.get("_CWD"))


def _variables(stdout: str) -> dict:
    found = {}
    for line in stdout.splitlines():
        if line.startswith("##vso[task.setvariable variable="):
            head, value = line[len("##vso[task.setvariable variable="):].split("]", 1)
            found[head.split(";")[0]] = (value, "isOutput=true" in head)
    return found


@pytest.fixture
def ado():
    with FakeAzureDevOps() as fake:
        yield fake


def _agent_env(ado, run, **more) -> dict:
    return {"SYSTEM_COLLECTIONURI": ado.collection_uri, "SYSTEM_TEAMPROJECT": PROJECT,
            "SYSTEM_DEFINITIONID": DEFINITION_ID, "SYSTEM_ACCESSTOKEN": run.token, **more}


# -- changed_use_cases.py ----------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


@pytest.fixture
def history(tmp_path):
    """origin with development at A; a clone whose HEAD is B (given files changed)."""
    origin = tmp_path / "origin"
    for rel in ("configs/classification/x.yaml", "configs/qa/x.yaml", "flows/qa/f.py", "src/genaiops/m.py",
                "docs/a.md"):
        (origin / rel).parent.mkdir(parents=True, exist_ok=True)
        (origin / rel).write_text("a\n")
    _git(origin, "init", "-q", "-b", "development")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "A")
    base = _git(origin, "rev-parse", "HEAD")

    def change(*paths: str) -> Path:
        clone = tmp_path / f"clone{len(list(tmp_path.glob('clone*')))}"
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        for rel in paths:
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            (clone / rel).write_text("b\n")
        _git(clone, "add", "-A")
        _git(clone, "commit", "-qm", "B")
        return clone

    return base, change


def _changed(clone: Path, env: dict) -> dict:
    done = _script("changed_use_cases.py", ["--use-cases", "classification,qa,support-bot"], {**env, "_CWD": str(clone)})
    assert done.returncode == 0, done.stderr
    return {k: v for k, (v, output) in _variables(done.stdout).items() if output}, done.stdout


@pytest.mark.parametrize("paths,expected", [
    (["flows/qa/f.py"], {"classification": "false", "qa": "true", "support_bot": "false"}),
    (["configs/classification/x.yaml", "datasets/qa/d.jsonl"],
     {"classification": "true", "qa": "true", "support_bot": "false"}),
    (["configs/other/x.yaml"], {"classification": "false", "qa": "false", "support_bot": "false"}),
    (["src/genaiops/m.py"], {"classification": "true", "qa": "true", "support_bot": "true"}),
])
def test_a_pull_request_marks_the_use_cases_its_files_belong_to(history, ado, paths, expected):
    _, change = history
    clone = change(*paths)
    run = ado.new_run("refs/pull/1/merge", "PullRequest", "a", "x")
    marked, _ = _changed(clone, _agent_env(ado, run, BUILD_REASON="PullRequest",
                                           SYSTEM_PULLREQUEST_TARGETBRANCH="refs/heads/development"))
    assert marked == expected


def _deployed(ado, branch: str, commit: str, env: str, *use_cases: str, result: str = "succeeded",
              reason: str = "IndividualCI", stage_result: str = "succeeded"):
    """A completed run that deployed `use_cases` to `env`: tagged, and its deploy stages in the timeline."""
    run = ado.new_run(branch, reason, "a", commit)
    for use_case in use_cases:
        run.tags.append(f"deployed-{env}-{use_case}")
        stage = ("DeployDev_" if env == "dev" else "Prod_") + use_case.replace("-", "_")
        run.timeline.append({"id": f"s-{stage}", "parentId": None, "type": "Stage", "identifier": stage,
                             "state": "completed", "result": stage_result})
        run.artifacts[f"evidence-{use_case}-1"] = Path("/x")
    ado.finish(run, result)
    return run


def test_a_push_compares_each_use_case_with_its_last_deployed_commit(history, ado):
    base, change = history
    clone = change("configs/qa/x.yaml")
    _deployed(ado, "refs/heads/development", base, "dev", "classification", "qa", "support-bot")
    run = ado.new_run("refs/heads/development", "IndividualCI", "a", "head")
    marked, out = _changed(clone, _agent_env(ado, run, BUILD_REASON="IndividualCI",
                                             BUILD_SOURCEBRANCH="refs/heads/development"))
    assert marked == {"classification": "false", "qa": "true", "support_bot": "false"}
    assert f"classification: unchanged since {base[:12]}, deployed to dev" in out
    queries = [r["query"] for r in ado.requests if r["path"].endswith("/build/builds")]
    assert {q["tagFilters"] for q in queries} == {"deployed-dev-classification", "deployed-dev-qa",
                                                   "deployed-dev-support-bot"}
    assert all(q["statusFilter"] == "completed" for q in queries)


def test_a_failed_or_rejected_release_is_built_again_by_the_next_push(history, ado):
    """Issue 21.2: a release of classification that failed (or was rejected) deployed nothing to
    prod; a later push to main that touches only qa must still release classification."""
    base, change = history
    clone = change("configs/classification/x.yaml")  # B on top of A
    b = _git(clone, "rev-parse", "HEAD")
    _deployed(ado, "refs/heads/main", base, "prod", "classification", "qa")  # both released at A
    failed = _deployed(ado, "refs/heads/main", b, "prod", "qa")  # B: qa released, classification not
    failed.timeline.append({"id": "s-x", "parentId": None, "type": "Stage", "identifier": "Prod_classification",
                            "state": "completed", "result": "failed"})  # its approval was rejected
    (clone / "configs/qa/x.yaml").write_text("c\n")
    _git(clone, "commit", "-qam", "C: qa only")
    run = ado.new_run("refs/heads/main", "IndividualCI", "a", "head")
    marked, out = _changed(clone, _agent_env(ado, run, BUILD_REASON="IndividualCI", BUILD_SOURCEBRANCH="refs/heads/main"))
    assert marked["classification"] == "true", out  # compared with A, its last prod deployment
    assert marked["support_bot"] == "true" and "support-bot: runs (support-bot was never deployed to prod)" in out


def test_a_tag_without_a_deploy_or_from_a_pull_request_is_not_a_deployment(history, ado):
    base, change = history
    clone = change("configs/qa/x.yaml")
    _deployed(ado, "refs/pull/7/merge", base, "dev", "classification", reason="PullRequest")  # tagged itself
    _deployed(ado, "refs/heads/feature/x", base, "dev", "classification")  # not a deploying branch
    _deployed(ado, "refs/heads/development", base, "dev", "classification", stage_result="failed")
    run = ado.new_run("refs/heads/development", "IndividualCI", "a", "head")
    marked, out = _changed(clone, _agent_env(ado, run, BUILD_REASON="IndividualCI",
                                             BUILD_SOURCEBRANCH="refs/heads/development"))
    assert marked["classification"] == "true" and "never deployed to dev" in out


def test_when_the_change_is_unknown_every_use_case_runs(history, ado):
    _, change = history
    clone = change("configs/qa/x.yaml")
    run = ado.new_run("refs/heads/main", "IndividualCI", "a", "head")
    marked, out = _changed(clone, _agent_env(ado, run, BUILD_REASON="IndividualCI", SYSTEM_ACCESSTOKEN="wrong",
                                             BUILD_SOURCEBRANCH="refs/heads/main"))
    assert set(marked.values()) == {"true"}
    assert "task.logissue type=warning" in out and "HTTP 401" in out and "running it" in out


# -- find_baseline.py ----------------------------------------------------------------------------------

def _baseline(ado, run, **env):
    done = _script("find_baseline.py", ["--use-case", "classification", "--deployed-env", env.pop("mode", "auto"),
                                         "--target", "/w/baseline"], _agent_env(ado, run, **env))
    return done, {k: v for k, (v, _) in _variables(done.stdout).items()}


def test_the_newest_deployed_run_and_its_last_evidence_attempt_are_the_baseline(ado):
    old = _deployed(ado, "refs/heads/main", "1", "prod", "classification")
    partial = _deployed(ado, "refs/heads/main", "2", "prod", "classification")  # qa failed, classification deployed
    partial.tags.append("deployed-dev-classification")
    partial.timeline.append({"id": "s-d", "parentId": None, "type": "Stage", "identifier": "DeployDev_classification",
                             "state": "completed", "result": "succeeded"})
    partial.artifacts.update({"evidence-classification-2": Path("/x"), "evidence-qa-1": Path("/x")})
    partial.result = "partiallySucceeded"
    assert old.id < partial.id
    run = ado.new_run("refs/heads/main", "IndividualCI", "a", "3")
    done, found = _baseline(ado, run, BUILD_SOURCEBRANCH="refs/heads/main")
    assert done.returncode == 0, done.stderr
    assert found == {"baselineRunId": str(partial.id), "baselineArtifact": "evidence-classification-2",
                     "baselineSummary": "/w/baseline/summary.json"}
    done, found = _baseline(ado, run, BUILD_SOURCEBRANCH="refs/heads/development")  # auto: dev elsewhere
    assert found["baselineRunId"] == str(partial.id)
    tags = [r["query"]["tagFilters"] for r in ado.requests if r["path"].endswith("/build/builds")]
    assert tags == ["deployed-prod-classification", "deployed-dev-classification"]


def test_a_pull_request_that_tags_itself_deployed_is_not_a_baseline(ado):
    """Issue 21.8: any step can print ##vso[build.addbuildtag]deployed-dev-<uc>; only a run of a
    deploying branch whose deploy stage succeeded counts."""
    real = _deployed(ado, "refs/heads/development", "1", "dev", "classification")
    _deployed(ado, "refs/pull/9/merge", "2", "dev", "classification", reason="PullRequest")
    _deployed(ado, "refs/heads/feature/poison", "3", "dev", "classification")
    run = ado.new_run("refs/pull/10/merge", "PullRequest", "a", "4")
    done, found = _baseline(ado, run, mode="dev")
    assert done.returncode == 0, done.stderr
    assert found["baselineRunId"] == str(real.id)
    assert "may not deploy to dev: not a baseline" in done.stdout


def test_nothing_deployed_yet_means_no_baseline_and_broken_lookups_fail(ado):
    run = ado.new_run("refs/heads/development", "IndividualCI", "a", "1")
    done, found = _baseline(ado, run, mode="dev")
    assert done.returncode == 0 and found == {"baselineRunId": "", "baselineArtifact": "", "baselineSummary": ""}
    tagged = _deployed(ado, "refs/heads/development", "2", "dev", "classification")
    tagged.artifacts.clear()
    done, _ = _baseline(ado, run, mode="dev")
    assert done.returncode == 1 and "has no evidence-classification-* artifact" in done.stderr
    done, _ = _baseline(ado, run, mode="dev", SYSTEM_ACCESSTOKEN="wrong")
    assert done.returncode == 1 and "HTTP 401" in done.stderr


# -- release_outputs.py --------------------------------------------------------------------------------

def _evidence(tmp_path, **changes) -> Path:
    data = {"schema": "genaiops.evidence/1", "use_case": "classification", "env": "dev",
            "variant": {"label": "classify.careful", "nodes": {}, "init": {}},
            "evaluated_flow_hash": "sha256:" + "1" * 64, "flow_hash": "sha256:" + "2" * 64,
            "evaluation_id": "classification-eval-9", "summary_digest": "3" * 64, "verdict": "pass",
            "gates": [{"name": "accuracy >= 0.8", "status": "pass", "message": "0.91 ##vso[task.complete]"}],
            "git_commit": "c" * 40, "build_id": "42",
            "image": {"repository": "myacr.azurecr.io/genaiops/classification", "digest": DIGEST,
                      "image_id": "sha256:" + "d" * 64, "tag": "genaiops/classification:abc", "labels": {}},
            **changes}
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(data))
    return path


def test_release_outputs_give_the_approver_the_digest_and_the_evidence(tmp_path):
    env = {"SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/", "SYSTEM_TEAMPROJECT": "proj", "BUILD_BUILDID": "42"}
    done = _script("release_outputs.py", ["--evidence", str(_evidence(tmp_path)), "--artifact", "evidence-x-1"], env)
    assert done.returncode == 0, done.stderr
    found = _variables(done.stdout)
    assert found["digest"] == (DIGEST, True) and found["artifact"] == ("evidence-x-1", True)
    assert found["reference"] == (f"myacr.azurecr.io/genaiops/classification@{DIGEST}", True)
    text, output = found["text"]
    assert output and DIGEST in text and "verdict pass" in text and "accuracy >= 0.8: pass" in text
    assert "https://dev.azure.com/org/proj/_build/results?buildId=42" in text
    assert "##" not in text  # no logging command can hide in a variable


@pytest.mark.parametrize("evidence", [None, {"verdict": "maybe"}])
def test_release_outputs_refuse_missing_or_invalid_evidence(tmp_path, evidence):
    path = tmp_path / "none.json" if evidence is None else _evidence(tmp_path, **evidence)
    done = _script("release_outputs.py", ["--evidence", str(path), "--artifact", "a"], {})
    assert done.returncode == 1 and "setvariable" not in done.stdout
