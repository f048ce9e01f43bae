"""The GitHub approval check of a prod deploy (`approval_source: github`), against the loopback
GitHub fake (its REST API over real HTTP as genaiops calls it with httpx): the run's environment
review must be an approval by someone other than the run's actor, whose comment carries the digest
being deployed, within the TTL measured from the deploy job's start. Everything missing, rejected,
ambiguous or unreadable refuses; the grant goes into the audit chain with the reviewer's login.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fakes.github import OWNER, REPO, FakeGitHub

from genaiops.ci.github import GitHubApi, GitHubRepo
from genaiops.deploy.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    GitHubApprovals,
    approval_source,
)
from genaiops.deploy.github import GitHubApprovalRefused, GitHubApprovalsClient, GitHubRun
from genaiops.errors import UsageError

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
SHA = "c" * 40
STARTED = "2026-12-06T14:00:00Z"
NOW = datetime(2026, 12, 6, 14, 20, tzinfo=timezone.utc)
RUNNER = "GitHub Actions 7"


@pytest.fixture
def github():
    with FakeGitHub() as fake:
        yield fake


def _release(github, actor="dana-dev", triggering_actor=None):
    """A push to main whose Build job finished and whose prod Deploy job is running on RUNNER."""
    run = github.new_run(SHA, actor=actor, triggering_actor=triggering_actor)
    github.add_job(run, "Release classification / Build", "GitHub Actions 3", status="completed")
    for n in range(120):  # enough jobs for the jobs list to take two pages
        github.add_job(run, f"Other job {n}", f"GitHub Actions {100 + n}", status="completed")
    github.add_job(run, "Release classification / Deploy prod", RUNNER, started_at=STARTED)
    return run


def _env(github, run, token=None, **extra) -> dict:
    return {"GITHUB_API_URL": github.api_url, "GITHUB_REPOSITORY": f"{OWNER}/{REPO}",
            "GITHUB_TOKEN": token or github.token(actions="read"), "GITHUB_RUN_ID": str(run.id),
            "GITHUB_RUN_ATTEMPT": str(run.run_attempt), "RUNNER_NAME": RUNNER, "GITHUB_SHA": SHA, **extra}


def _verify(github, run, digest=DIGEST, now=NOW, ttl=60, **env):
    client = GitHubApprovalsClient(GitHubRun.from_env(_env(github, run, **env)))
    return client.verify_run_approved("prod", digest, ttl, now)


def test_an_approval_by_another_person_carrying_the_digest_passes(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", f"gates pass, deploying {DIGEST}")
    result = _verify(github, run)
    assert result["by"] == "riley-release" and result["artifact"] == DIGEST
    assert result["at"] == "2026-12-06T14:00:00+00:00" and result["run_id"] == run.id
    sent = [r for r in github.requests if r["path"].endswith("/approvals")][0]["headers"]
    assert sent["Authorization"].startswith("Bearer ghs_") and sent["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent["Accept"] == "application/vnd.github+json"
    jobs = [r for r in github.requests if r["path"].endswith("/jobs")]
    assert len(jobs) == 2 and jobs[0]["query"]["per_page"] == "100"  # the Link header was followed


def test_self_review_is_refused_for_the_actor_and_the_triggering_actor(github):
    run = _release(github)
    github.review(run, "prod", "approved", "dana-dev", f"mine {DIGEST}")
    with pytest.raises(GitHubApprovalRefused, match="dana-dev approved 'prod'.*self-review") as info:
        _verify(github, run)
    assert "Prevent self-review" in info.value.hint
    rerun = _release(github, actor="dana-dev", triggering_actor="sam-rerun")  # a re-run by someone else
    github.review(rerun, "prod", "approved", "sam-rerun", DIGEST)
    with pytest.raises(GitHubApprovalRefused, match="self-review"):
        _verify(github, rerun)


def test_the_comment_must_carry_the_digest_being_deployed(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", f"approving {OTHER}")
    with pytest.raises(GitHubApprovalRefused, match=f"names {OTHER}, not {DIGEST}: wrong digest"):
        _verify(github, run)
    bare = _release(github)
    github.review(bare, "prod", "approved", "riley-release", "LGTM")
    with pytest.raises(GitHubApprovalRefused, match="names no digest in its comment"):
        _verify(github, bare)
    prefix = _release(github)  # a shortened digest is not the digest
    github.review(prefix, "prod", "approved", "riley-release", DIGEST[:19])
    with pytest.raises(GitHubApprovalRefused, match="names no digest"):
        _verify(github, prefix)


def test_a_rejection_or_no_review_of_this_environment_refuses(github):
    run = _release(github)
    github.review(run, "dev", "approved", "riley-release", DIGEST)  # another environment's review
    with pytest.raises(GitHubApprovalRefused, match="'prod' of run .* has no review"):
        _verify(github, run)
    github.review(run, "prod", "rejected", "riley-release", "regression on billing tickets")
    github.review(run, "prod", "approved", "sam-ops", DIGEST)
    with pytest.raises(GitHubApprovalRefused, match="was rejected by riley-release: regression"):
        _verify(github, run)


def test_the_ttl_runs_from_the_deploy_job_start(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", DIGEST)
    assert _verify(github, run, now=datetime(2026, 12, 6, 14, 59, tzinfo=timezone.utc))
    with pytest.raises(GitHubApprovalRefused, match=r"expired \(valid 60 minutes\)"):
        _verify(github, run, now=datetime(2026, 12, 6, 15, 1, tzinfo=timezone.utc))


def test_the_run_must_be_this_checkout_and_attempt_and_this_job_must_be_found(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", DIGEST)
    with pytest.raises(GitHubApprovalRefused, match="is of commit c+, but this checkout is d+"):
        _verify(github, run, GITHUB_SHA="d" * 40)
    with pytest.raises(GitHubApprovalRefused, match="is at attempt 1, this job belongs to attempt 2"):
        _verify(github, run, GITHUB_RUN_ATTEMPT="2")
    with pytest.raises(GitHubApprovalRefused, match="0 in-progress jobs on runner 'elsewhere'"):
        _verify(github, run, RUNNER_NAME="elsewhere")


def test_unreadable_answers_refuse(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", DIGEST)
    with pytest.raises(GitHubApprovalRefused, match="HTTP 401 for GET actions/runs/.*Bad credentials"):
        _verify(github, run, token="ghs_wrong")
    with pytest.raises(GitHubApprovalRefused, match="HTTP 403 .*Resource not accessible") as info:
        _verify(github, run, token=github.token(contents="read"))  # no `actions: read`
    assert "actions: read" in info.value.hint
    github.stop()
    with pytest.raises(GitHubApprovalRefused, match="cannot reach GitHub"):
        _verify(github, run)


def test_missing_workflow_variables_are_a_usage_error():
    with pytest.raises(UsageError, match="GITHUB_TOKEN") as info:
        GitHubRun.from_env({"GITHUB_REPOSITORY": "o/r"})
    assert "github.token" in info.value.hint
    with pytest.raises(UsageError, match="GITHUB_RUN_ATTEMPT, RUNNER_NAME"):
        GitHubRun.from_env({"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": "t", "GITHUB_RUN_ID": "1"})


def test_the_source_grants_with_the_reviewer_and_a_chain_rejection_stays_final(github):
    run = _release(github)
    github.review(run, "prod", "approved", "riley-release", DIGEST)
    source = approval_source("github", _env(github, run))
    assert isinstance(source, GitHubApprovals)
    grant = source.grant(ApprovalRequest("classification", "prod", DIGEST, 60), [], NOW)
    ref = grant.as_ref()
    assert ref["source"] == "github" and ref["by"] == "riley-release" and ref["run_id"] == run.id
    assert ref["at"] == "2026-12-06T14:00:00+00:00" and ref["repository"] == f"{OWNER}/{REPO}"
    rejected = [{"event": "rejected", "use_case": "classification", "env": "prod", "artifact": DIGEST,
                 "by": "sam", "at": "2026-12-06T13:00:00+00:00", "note": "no"}]
    with pytest.raises(ApprovalRefused, match="was rejected for prod by sam"):
        source.grant(ApprovalRequest("classification", "prod", DIGEST, 60), rejected, NOW)


def test_a_refused_deploy_and_a_granted_one_are_in_the_audit_chain(github, workspace, trust_dir):
    """Through the deploy phase's gate: the refusal and the grant (reviewer's login) are chain records."""
    from genaiops.config.deployment import Environment
    from genaiops.deploy.audit import audit_log
    from genaiops.phases.deploy import _approval

    environment = Environment(name="prod", target="docker", requires_approval=True, approval_source="github",
                              approval_ttl_minutes=60)
    trail = audit_log(workspace)
    base = {"use_case": "classification", "env": "prod", "target": "docker", "artifact": DIGEST,
            "flow_hash": "sha256:" + "f" * 64, "variant": {"label": "default"}}
    run = _release(github)
    github.runs[run.id].jobs[-1]["started_at"] = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    github.review(run, "prod", "approved", "dana-dev", DIGEST)  # the actor
    with pytest.raises(GitHubApprovalRefused, match="self-review"):
        _approval(workspace, trail, environment, base, _env(github, run))
    github.runs[run.id].reviews.clear()
    github.review(run, "prod", "approved", "riley-release", DIGEST)
    grant = _approval(workspace, trail, environment, base, _env(github, run))
    trail.append({"event": "deployed", **base, "ok": True, "approval": grant.as_ref()})
    records = trail.read()
    assert [r["event"] for r in records] == ["deploy_refused", "deployed"]
    assert "self-review" in records[0]["reason"]
    assert records[1]["approval"]["by"] == "riley-release" and records[1]["approval"]["source"] == "github"


def test_the_client_pages_and_reads_a_bare_list(github):
    api = GitHubApi(GitHubRepo(github.api_url, f"{OWNER}/{REPO}", github.token(pull_requests="write")))
    for n in range(205):
        github.add_comment(5, f"comment {n}")
    assert [c["body"] for c in api.paginate("issues/5/comments")][-1] == "comment 204"
    assert len([r for r in github.requests if r["path"].endswith("/issues/5/comments")]) == 3
