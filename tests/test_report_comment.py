"""`genaiops report comment`: the verdict as a sticky PR comment, through the CLI against the loopback
GitHub and Azure DevOps fakes (real HTTP): created once, found again by its hidden marker and updated
on the next push, never duplicated; also in the GitHub job summary; a secret that reached the
summary (a canary) never reaches the comment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes.ado import PROJECT, FakeAzureDevOps
from fakes.github import OWNER, REPO, FakeGitHub
from test_reports import make_summary

from genaiops.cli import main
from genaiops.evaluation.summary import BaselineRef, Summary
from genaiops.reports.comment import changed_rows, marker, render_comment

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = marker("classification")


def _summary(tmp_path: Path, name: str, canary: str, accuracy_rows=None, baseline: Path | None = None) -> Path:
    """A summary.json of `classification` with the canary in a problem line (as an endpoint's error
    echoing a key would put it there) and, given, a baseline it was compared with."""
    summary = make_summary()
    summary.use_case, summary.id = "classification", f"classification-{name}"
    summary.problems = [f"endpoint answered 401: Incorrect API key provided: {canary}"]
    if accuracy_rows:
        for block in summary.scores:
            block.rows = dict(accuracy_rows)
    if baseline is not None:
        base = Summary.from_json(baseline.read_text())
        summary.baseline = BaselineRef(id=base.id, experiment_id=base.experiment_id, variant=base.best.variant,
                                       source=str(baseline), digest=base.digest(), metrics=[])
    folder = tmp_path / name
    folder.mkdir()
    (folder / "summary.json").write_text(summary.to_json())  # written raw: the canary is in the file
    return folder / "summary.json"


@pytest.fixture
def canary(monkeypatch):
    value = "sk-canary-" + os.urandom(8).hex()
    monkeypatch.setenv("LLM_API_KEY", value)
    return value


def _comment(*args) -> int:
    return main(["--repo", str(REPO_ROOT), "report", "comment", "-u", "classification", *args])


def test_github_comment_is_created_once_updated_on_the_next_push_and_in_the_job_summary(
        tmp_path, monkeypatch, canary, capsys):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": 42}}))
    step_summary = tmp_path / "step_summary.md"
    with FakeGitHub() as github:
        for n in range(130):  # a busy PR: the marker comment must be found past the first page
            github.add_comment(42, f"review remark {n}", login="riley-release")
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{REPO}")
        monkeypatch.setenv("GITHUB_TOKEN", github.token(pull_requests="write"))
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
        monkeypatch.setenv("GITHUB_RUN_ID", "7001")
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
        first = _summary(tmp_path, "push1", canary)
        assert _comment("--summary", str(first), "--platform", "github") == 0
        assert "created the github PR comment" in capsys.readouterr().out
        baseline = first
        second = _summary(tmp_path, "push2", canary, {"0": 0, "1": 1, "2": None, "3": 1}, baseline=baseline)
        assert _comment("--summary", str(second.parent), "--platform", "github") == 0
        assert "updated the github PR comment" in capsys.readouterr().out
        mine = [c for c in github.comments[42] if MARKER in c["body"]]
        assert len(mine) == 1 and len(github.comments[42]) == 131  # updated, not duplicated
        body = mine[0]["body"]
        assert body.startswith(MARKER) and "classification-push2" in body
        assert "| rank | variant | accuracy | 95% CI |" in body and "| gate | result |" in body
        assert "**Changed rows**: 2" in body and "| tickets | 0 | 1 | 0 |" in body and "| tickets | 3 | 0 | 1 |" in body
        assert "**Cost and tokens**: 2400 tokens" in body
        assert f"https://github.com/{OWNER}/{REPO}/actions/runs/7001" in body
        posts = [r for r in github.requests if r["method"] == "POST"]
        patches = [r for r in github.requests if r["method"] == "PATCH"]
        assert len(posts) == 1 and len(patches) == 1
        assert all(r["headers"]["X-GitHub-Api-Version"] == "2022-11-28" for r in github.requests)
    summary_text = step_summary.read_text()
    assert summary_text.count(MARKER) == 2  # one per run, appended
    for text in (body, summary_text, json.dumps([r["body"] for r in posts + patches])):
        assert canary not in text
    assert "Incorrect API key provided: ***" in body


def test_azure_devops_thread_is_created_once_and_its_comment_updated(tmp_path, monkeypatch, canary, capsys):
    with FakeAzureDevOps() as ado:
        run = ado.new_run("refs/pull/9/merge", "PullRequest", "dana.dev@contoso.com", "c" * 40)
        ado.threads[("repo-guid-1", 9)] = [{"id": 900, "status": "active", "comments": [
            {"id": 1, "parentCommentId": 0, "content": "please rename the variant", "commentType": "text"}]}]
        for name, value in {"SYSTEM_COLLECTIONURI": ado.collection_uri, "SYSTEM_TEAMPROJECT": PROJECT,
                            "BUILD_REPOSITORY_ID": "repo-guid-1", "SYSTEM_PULLREQUEST_PULLREQUESTID": "9",
                            "SYSTEM_ACCESSTOKEN": run.token, "BUILD_BUILDID": str(run.id)}.items():
            monkeypatch.setenv(name, value)
        first = _summary(tmp_path, "push1", canary)
        assert _comment("--summary", str(first), "--platform", "azure_devops") == 0
        assert "created the azure_devops PR comment" in capsys.readouterr().out
        second = _summary(tmp_path, "push2", canary)
        assert _comment("--summary", str(second), "--platform", "azure_devops", "--json") == 0
        result = json.loads(capsys.readouterr().out)
        assert result["action"] == "updated" and result["duplicates"] == []
        threads = ado.threads[("repo-guid-1", 9)]
        mine = [t for t in threads if MARKER in t["comments"][0]["content"]]
        assert len(threads) == 2 and len(mine) == 1
        content = mine[0]["comments"][0]["content"]
        assert "classification-push2" in content and canary not in content
        assert f"_build/results?buildId={run.id}" in content
        calls = [(r["method"], r["path"].rsplit("/pullRequests/", 1)[-1]) for r in ado.requests]
        assert calls == [("GET", "9/threads"), ("POST", "9/threads"), ("GET", "9/threads"),
                         ("PATCH", f"9/threads/{mine[0]['id']}/comments/1")]
        assert all(r["query"]["api-version"] == "7.1" and r["headers"]["Authorization"] == f"Bearer {run.token}"
                   for r in ado.requests)


def test_a_token_without_pull_request_write_fails_with_the_fix(tmp_path, monkeypatch, canary, capsys):
    with FakeGitHub() as github:
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{REPO}")
        monkeypatch.setenv("GITHUB_TOKEN", github.token(pull_requests="read"))
        assert _comment("--summary", str(_summary(tmp_path, "p", canary)), "--platform", "github", "--pr", "3") == 1
    err = capsys.readouterr().err
    assert "HTTP 403 for POST issues/3/comments" in err and "pull-requests: write" in err


def test_no_pull_request_is_a_usage_error_and_without_a_platform_the_comment_is_printed(
        tmp_path, monkeypatch, canary, capsys):
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    path = _summary(tmp_path, "p", canary)
    monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{REPO}")
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    assert _comment("--summary", str(path), "--platform", "github") == 2
    assert "no pull request to comment on" in capsys.readouterr().err
    assert _comment("--summary", str(path)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(MARKER) and canary not in printed and "Changed rows**: 0 (no baseline" in printed


def test_changed_rows_are_not_compared_across_changed_datasets():
    summary, baseline = make_summary(), make_summary()
    summary.baseline = BaselineRef(id="b", experiment_id="e", variant="careful", source="x", digest="d", metrics=[])
    assert changed_rows(summary, baseline)[0] == []
    baseline.datasets = {"tickets": "sha256:other"}
    assert "changed since the baseline" in changed_rows(summary, baseline)[1]
    assert render_comment(summary, baseline).count(marker("demo")) == 1
