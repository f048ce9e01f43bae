"""GitHub Actions: was *this run's* environment approved, by someone other than its actor, recently,
for the digest being deployed? (`approval_source: github`; `deploy.approvals.GitHubApprovals`.)

The prod deploy job names a GitHub environment with required reviewers, so GitHub holds the job
until a reviewer approves it. genaiops then reads, with the job's `GITHUB_TOKEN` (`actions: read`):

1. the run, `GET /repos/{owner}/{repo}/actions/runs/{GITHUB_RUN_ID}`: its `actor` and
   `triggering_actor` (who may not approve), its `head_sha` (must be `GITHUB_SHA`, the checkout being
   deployed) and `run_attempt` (must be `GITHUB_RUN_ATTEMPT`);
2. the run's review history, `GET .../actions/runs/{id}/approvals` ("Get the review history for a
   workflow run"): the entries whose `environments` include the environment. Any `rejected` entry
   refuses. The grant is the newest `approved` entry whose **comment carries the digest being
   deployed** (`sha256:<64 hex>`): the Build job's summary shows the digest and asks reviewers to
   paste it into the review comment, so the digest they saw is on GitHub's own record. An approval
   whose comment names another digest, or none, refuses; so does an approval by the run's actor or
   triggering actor (self-review, whatever the environment's setting);
3. when: the review record carries no time. The deploy job cannot start before its environment is
   approved, so the time taken is the `started_at` of this job, found in
   `GET .../actions/runs/{id}/attempts/{attempt}/jobs` (paginated) as the in-progress job on this
   runner (`RUNNER_NAME`). Older than `approval_ttl_minutes` refuses.

Everything unreadable, missing or ambiguous refuses (exit 1).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from genaiops.ci.github import GitHubApi, GitHubApiError, GitHubRepo
from genaiops.errors import GenaiopsError, UsageError

DIGEST_IN_TEXT = re.compile(r"sha256:([0-9a-f]{64})\b")
ENV_NAMES = ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "RUNNER_NAME")
ENVIRONMENT_ENV = "GENAIOPS_GITHUB_ENVIRONMENT"  # the GitHub environment, if not named like -e


class GitHubApprovalRefused(GenaiopsError):
    """The run's environment approval is missing, rejected, self-reviewed, stale or for another
    digest (exit 1)."""


@dataclass(frozen=True)
class GitHubRun:
    repo: GitHubRepo
    run_id: int
    attempt: int
    runner: str  # RUNNER_NAME: finds this job among the run's jobs
    sha: str = ""  # GITHUB_SHA
    environment: str = ""  # GENAIOPS_GITHUB_ENVIRONMENT (default: the genaiops environment's name)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> GitHubRun:
        env = os.environ if environ is None else environ
        repo = GitHubRepo.from_env(env, why="approval_source github")
        missing = [n for n in ENV_NAMES if not env.get(n)]
        if missing:
            raise UsageError(f"approval_source github needs {', '.join(missing)} (not set)",
                             hint="run `genaiops run deploy` inside the GitHub Actions deploy job")
        try:
            run_id, attempt = int(env["GITHUB_RUN_ID"]), int(env["GITHUB_RUN_ATTEMPT"])
        except ValueError:
            raise UsageError("GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT must be numbers") from None
        return cls(repo, run_id, attempt, env["RUNNER_NAME"], env.get("GITHUB_SHA", ""),
                   env.get(ENVIRONMENT_ENV, ""))


def digests_in(text: str | None) -> set[str]:
    return {f"sha256:{h}" for h in DIGEST_IN_TEXT.findall((text or "").lower())}


def _login(user) -> str:
    return str((user or {}).get("login") or "") if isinstance(user, dict) else ""


def _time(value, what: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise GitHubApprovalRefused(f"{what} is not a time: {value!r}") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


class GitHubApprovalsClient:
    def __init__(self, run: GitHubRun, api: GitHubApi | None = None):
        self.run = run
        self.api = api or GitHubApi(run.repo)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GitHubApiError as exc:
            raise GitHubApprovalRefused(exc.message, hint=exc.hint) from None

    def workflow_run(self) -> dict:
        run = self._call(self.api.get_object, f"actions/runs/{self.run.run_id}")
        if run.get("id") != self.run.run_id:
            raise GitHubApprovalRefused(f"GitHub returned run {run.get('id')} for run {self.run.run_id}")
        if self.run.sha and run.get("head_sha") != self.run.sha:
            raise GitHubApprovalRefused(f"run {self.run.run_id} is of commit {run.get('head_sha')}, but this "
                                        f"checkout is {self.run.sha}")
        if run.get("run_attempt") != self.run.attempt:
            raise GitHubApprovalRefused(f"run {self.run.run_id} is at attempt {run.get('run_attempt')}, this "
                                        f"job belongs to attempt {self.run.attempt}")
        return run

    def reviews(self, environment: str) -> list[dict]:
        """The review history entries of this run that name `environment`, oldest first."""
        history = self._call(self.api.get, f"actions/runs/{self.run.run_id}/approvals")
        if not isinstance(history, list):
            raise GitHubApprovalRefused(f"the review history of run {self.run.run_id} is not a list")
        return [r for r in history if isinstance(r, dict) and any(
            isinstance(e, dict) and e.get("name") == environment for e in r.get("environments") or [])]

    def this_job(self) -> dict:
        jobs = self._call(self.api.paginate, f"actions/runs/{self.run.run_id}/attempts/{self.run.attempt}/jobs",
                          "jobs")
        mine = [j for j in jobs if j.get("status") == "in_progress" and j.get("runner_name") == self.run.runner]
        if len(mine) != 1:
            raise GitHubApprovalRefused(f"run {self.run.run_id} attempt {self.run.attempt} has {len(mine)} "
                                        f"in-progress jobs on runner {self.run.runner!r}, expected one "
                                        f"(of {len(jobs)} jobs)")
        return mine[0]

    def verify_run_approved(self, environment: str, digest: str, ttl_minutes: int,
                            now: datetime | None = None) -> dict:
        """The approval of `environment` in this run for `digest`, or GitHubApprovalRefused."""
        environment = self.run.environment or environment
        run = self.workflow_run()
        actors = {_login(run.get("actor")).lower(), _login(run.get("triggering_actor")).lower()} - {""}
        if not actors:
            raise GitHubApprovalRefused(f"run {self.run.run_id} names no actor: cannot tell a self-review")
        reviews = self.reviews(environment)
        if not reviews:
            raise GitHubApprovalRefused(f"environment {environment!r} of run {self.run.run_id} has no review",
                                        hint=f"add required reviewers to the GitHub environment {environment!r} "
                                             "and reference it with `environment:` in the deploy job")
        for review in reviews:
            if review.get("state") != "approved":
                raise GitHubApprovalRefused(f"environment {environment!r} of run {self.run.run_id} was "
                                            f"{review.get('state') or 'not approved'} by "
                                            f"{_login(review.get('user')) or 'someone'}: "
                                            f"{review.get('comment') or '(no comment)'}")
            if _login(review.get("user")).lower() in actors:
                raise GitHubApprovalRefused(
                    f"{_login(review.get('user'))} approved {environment!r} for run {self.run.run_id}, "
                    f"which they triggered (actor {', '.join(sorted(actors))}): self-review is refused",
                    hint=f"turn on 'Prevent self-review' on the GitHub environment {environment!r}; "
                         "another reviewer must approve")
        matching = [r for r in reviews if digest in digests_in(r.get("comment"))]
        if not matching:
            named = sorted(set().union(*(digests_in(r.get("comment")) for r in reviews)))
            if named:
                raise GitHubApprovalRefused(f"the approval of {environment!r} in run {self.run.run_id} names "
                                            f"{', '.join(named)}, not {digest}: wrong digest",
                                            hint="approve the run that built this digest")
            raise GitHubApprovalRefused(f"the approval of {environment!r} in run {self.run.run_id} names no "
                                        "digest in its comment",
                                        hint="re-run the deploy job and approve it with the digest from the "
                                             "Build job's summary in the review comment")
        approval = matching[-1]
        job = self.this_job()
        started = _time(job.get("started_at"), f"job {job.get('id')} started_at")
        now = now or datetime.now(timezone.utc)
        if now > started + timedelta(minutes=ttl_minutes):
            raise GitHubApprovalRefused(f"the approval of {environment!r} in run {self.run.run_id} by "
                                        f"{_login(approval.get('user'))} (job started {job.get('started_at')}) "
                                        f"expired (valid {ttl_minutes} minutes)",
                                        hint="re-run the deploy job: GitHub asks for a new review")
        return {"source": "github", "run_id": self.run.run_id, "run_attempt": self.run.attempt,
                "environment": environment, "by": _login(approval.get("user")),
                "at": started.isoformat(), "job_id": job.get("id"), "artifact": digest,
                "actor": sorted(actors), "repository": self.run.repo.repository}
