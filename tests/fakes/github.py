"""GitHub's REST API, as genaiops and the workflows' scripts call it: one repository, its workflow
runs (with their jobs and environment reviews) and its issue / pull-request comments. Served over
HTTP on 127.0.0.1, the way api.github.com answers:

  GET   /repos/{owner}/{repo}/actions/runs/{id}                          a workflow run
  GET   /repos/{owner}/{repo}/actions/runs/{id}/approvals                its review history (a bare array)
  GET   /repos/{owner}/{repo}/actions/runs/{id}/attempts/{n}/jobs        {total_count, jobs}, paginated
  GET   /repos/{owner}/{repo}/issues/{number}/comments                   an issue's / PR's comments, paginated
  POST  /repos/{owner}/{repo}/issues/{number}/comments                   {"body"} -> 201 the comment
  PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}               {"body"} -> 200 the comment
  GET   /repos/{owner}/{repo}/actions/artifacts?name=                     {total_count, artifacts}, paginated
  GET   /repos/{owner}/{repo}/actions/artifacts/{id}/zip                  302 to the archive (/_blob/{id},
                                                                         served without the token, as a
                                                                         signed storage URL would be)

Every request needs `Authorization: Bearer <a token the fake issued>` (401 "Bad credentials"
otherwise), `X-GitHub-Api-Version: 2022-11-28` (400 otherwise, as GitHub answers an unsupported
version). Lists take `per_page` (at most 100, default 30) and `page`, and answer with a `Link`
header (`rel="next"`, `rel="last"`) like GitHub's. A token's `permissions` are checked the way the
job's GITHUB_TOKEN is scoped: `actions: read` for runs, `pull-requests: write` or `issues: write`
to comment (403 "Resource not accessible by integration"). Tests read and write the store directly.
"""

from __future__ import annotations

import itertools
import secrets
import urllib.parse
from dataclasses import dataclass, field

from fakes.http import FakeServer, JsonHandler

OWNER, REPO = "contoso", "genai-ops"
API_VERSION = "2022-11-28"


def user(login: str, id_: int | None = None) -> dict:
    return {"login": login, "id": id_ or abs(hash(login)) % 10**7, "type": "User",
            "html_url": f"https://github.com/{login}"}


@dataclass
class Run:
    id: int
    head_sha: str
    head_branch: str
    event: str
    actor: str
    triggering_actor: str
    run_attempt: int = 1
    status: str = "in_progress"
    conclusion: str | None = None
    jobs: list[dict] = field(default_factory=list)  # of the current attempt
    reviews: list[dict] = field(default_factory=list)  # the review history, oldest first

    def rest(self, base: str) -> dict:
        return {"id": self.id, "name": "release", "head_sha": self.head_sha, "head_branch": self.head_branch,
                "event": self.event, "status": self.status, "conclusion": self.conclusion,
                "run_attempt": self.run_attempt, "actor": user(self.actor),
                "triggering_actor": user(self.triggering_actor),
                "html_url": f"https://github.com/{OWNER}/{REPO}/actions/runs/{self.id}",
                "url": f"{base}/repos/{OWNER}/{REPO}/actions/runs/{self.id}"}


class FakeGitHub(FakeServer):
    def __init__(self):
        super().__init__(_Handler)
        self.tokens: dict[str, dict] = {}  # token -> permissions {"actions": "read", ...}
        self.runs: dict[int, Run] = {}
        self.comments: dict[int, list[dict]] = {}  # issue / PR number -> comments, oldest first
        self._ids = itertools.count(7001)
        self._comment_ids = itertools.count(900001)
        self._environment_ids = itertools.count(161088)
        self.artifacts: list[dict] = []  # newest last; "zip" holds the archive's bytes
        self.blob_requests: list[dict] = []  # what reached the archive URL (no Authorization header)
        self._artifact_ids = itertools.count(5001)

    @property
    def api_url(self) -> str:
        return self.url

    def token(self, **permissions: str) -> str:
        """A job token with these permissions (`actions="read"`, `pull_requests="write"`)."""
        value = "ghs_" + secrets.token_hex(18)
        self.tokens[value] = {k.replace("_", "-"): v for k, v in permissions.items()}
        return value

    def new_run(self, head_sha: str, branch: str = "main", event: str = "push", actor: str = "dana-dev",
                triggering_actor: str | None = None) -> Run:
        run = Run(next(self._ids), head_sha, branch, event, actor, triggering_actor or actor)
        self.runs[run.id] = run
        return run

    def add_job(self, run: Run, name: str, runner: str, status: str = "in_progress",
                started_at: str = "2026-12-06T14:00:00Z") -> dict:
        job = {"id": run.id * 100 + len(run.jobs) + 1, "run_id": run.id, "run_attempt": run.run_attempt,
               "name": name, "status": status, "conclusion": None if status != "completed" else "success",
               "started_at": started_at, "completed_at": None, "runner_name": runner, "head_sha": run.head_sha}
        run.jobs.append(job)
        return job

    def review(self, run: Run, environment: str, state: str, login: str, comment: str = "") -> dict:
        entry = {"state": state, "comment": comment, "user": user(login),
                 "environments": [{"id": next(self._environment_ids), "node_id": "EN_kwDO", "name": environment,
                                   "url": f"{self.url}/repos/{OWNER}/{REPO}/environments/{environment}",
                                   "html_url": f"https://github.com/{OWNER}/{REPO}/deployments/activity_log"
                                               f"?environments_filter={environment}",
                                   "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}]}
        run.reviews.append(entry)
        return entry

    def add_artifact(self, name: str, archive: bytes, run_id: int, created_at: str) -> dict:
        artifact = {"id": next(self._artifact_ids), "name": name, "size_in_bytes": len(archive), "expired": False,
                    "created_at": created_at, "workflow_run": {"id": run_id}, "zip": archive}
        artifact["archive_download_url"] = f"{self.url}/repos/{OWNER}/{REPO}/actions/artifacts/{artifact['id']}/zip"
        self.artifacts.append(artifact)
        return artifact

    def add_comment(self, number: int, body: str, login: str = "github-actions[bot]") -> dict:
        comment = {"id": next(self._comment_ids), "body": body, "user": user(login),
                   "created_at": "2026-12-06T14:00:00Z", "updated_at": "2026-12-06T14:00:00Z",
                   "html_url": f"https://github.com/{OWNER}/{REPO}/pull/{number}#issuecomment-0"}
        comment["html_url"] = comment["html_url"][:-1] + str(comment["id"])
        self.comments.setdefault(number, []).append(comment)
        return comment


class _Handler(JsonHandler):
    server: FakeGitHub

    def route(self) -> None:
        if self.path_only.startswith("/_blob/"):  # the archive's storage URL: no GitHub token wanted
            self.server.blob_requests.append({"path": self.path_only, "headers": dict(self.headers)})
            found = [a for a in self.server.artifacts if f"/_blob/{a['id']}" == self.path_only]
            if not found or self.headers.get("Authorization"):
                return self.send(400 if found else 404, {"message": "AuthenticationFailed" if found else "BlobNotFound"})
            return self.send(200, found[0]["zip"], content_type="application/zip")
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        permissions = self.server.tokens.get(token)
        if permissions is None:
            return self.send(401, {"message": "Bad credentials",
                                   "documentation_url": "https://docs.github.com/rest"})
        if self.headers.get("X-GitHub-Api-Version") != API_VERSION:
            return self.send(400, {"message": f"Unsupported 'X-GitHub-Api-Version' header "
                                              f"{self.headers.get('X-GitHub-Api-Version')!r}"})
        prefix = f"/repos/{OWNER}/{REPO}/"
        if not self.path_only.startswith(prefix):
            return self.send(404, {"message": "Not Found"})
        parts = self.path_only[len(prefix):].strip("/").split("/")
        if parts[:2] == ["actions", "artifacts"]:
            if permissions.get("actions") not in ("read", "write"):
                return self._forbidden()
            return self._artifacts(parts[2:])
        if parts[:2] == ["actions", "runs"] and len(parts) >= 3:
            if permissions.get("actions") not in ("read", "write"):
                return self._forbidden()
            return self._runs(parts[2:])
        if parts[0] == "issues":
            if self.command == "GET" and permissions.get("pull-requests") not in ("read", "write") \
                    and permissions.get("issues") not in ("read", "write"):
                return self._forbidden()
            if self.command in ("POST", "PATCH") and "write" not in (permissions.get("pull-requests"),
                                                                     permissions.get("issues")):
                return self._forbidden()
            return self._issues(parts[1:])
        return self.send(404, {"message": "Not Found"})

    def _forbidden(self) -> None:
        self.send(403, {"message": "Resource not accessible by integration",
                        "documentation_url": "https://docs.github.com/rest"})

    def _runs(self, parts: list[str]) -> None:
        run = self.server.runs.get(int(parts[0])) if parts[0].isdigit() else None
        if run is None or self.command != "GET":
            return self.send(404, {"message": "Not Found"})
        if len(parts) == 1:
            return self.send(200, run.rest(self.server.url))
        if parts[1:] == ["approvals"]:
            return self.send(200, run.reviews)
        if len(parts) == 4 and parts[1] == "attempts" and parts[3] == "jobs":
            jobs = [j for j in run.jobs if str(j["run_attempt"]) == parts[2]]
            return self._page(jobs, lambda page: {"total_count": len(jobs), "jobs": page})
        return self.send(404, {"message": "Not Found"})

    def _artifacts(self, parts: list[str]) -> None:
        listed = [{k: v for k, v in a.items() if k != "zip"} for a in reversed(self.server.artifacts)
                  if self.query.get("name") in (None, a["name"])]  # newest first
        if not parts and self.command == "GET":
            return self._page(listed, lambda page: {"total_count": len(listed), "artifacts": page})
        if len(parts) == 2 and parts[1] == "zip" and self.command == "GET":
            if any(str(a["id"]) == parts[0] for a in self.server.artifacts):
                return self.send(302, b"", headers={"Location": f"{self.server.url}/_blob/{parts[0]}"})
        return self.send(404, {"message": "Not Found"})

    def _issues(self, parts: list[str]) -> None:
        if len(parts) == 2 and parts[0].isdigit() and parts[1] == "comments":
            number = int(parts[0])
            if self.command == "GET":
                comments = self.server.comments.get(number, [])
                return self._page(comments, lambda page: page)
            if self.command == "POST":
                body = (self.body or {}).get("body")
                if not isinstance(body, str) or not body:
                    return self.send(422, {"message": "Validation Failed", "errors": [{"field": "body"}]})
                if len(body) > 65536:
                    return self.send(422, {"message": "Validation Failed",
                                           "errors": [{"message": "body is too long (maximum is 65536 characters)"}]})
                return self.send(201, self.server.add_comment(number, body))
        if len(parts) == 2 and parts[0] == "comments" and parts[1].isdigit() and self.command == "PATCH":
            for comments in self.server.comments.values():
                for comment in comments:
                    if comment["id"] == int(parts[1]):
                        body = (self.body or {}).get("body")
                        if not isinstance(body, str) or not body:
                            return self.send(422, {"message": "Validation Failed"})
                        comment["body"] = body
                        comment["updated_at"] = "2026-12-06T15:00:00Z"
                        return self.send(200, comment)
        return self.send(404, {"message": "Not Found"})

    def _page(self, items: list, wrap) -> None:
        try:
            per_page = min(int(self.query.get("per_page", 30)), 100)
            page = max(int(self.query.get("page", 1)), 1)
        except ValueError:
            return self.send(400, {"message": "per_page and page must be numbers"})
        chunk = items[(page - 1) * per_page: page * per_page]
        last = max(1, -(-len(items) // per_page))
        links = []
        base = f"{self.server.url}{self.path_only}"
        if page < last:
            links.append(f'<{base}?{urllib.parse.urlencode({"per_page": per_page, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}?{urllib.parse.urlencode({"per_page": per_page, "page": last})}>; rel="last"')
        self.send(200, wrap(chunk), headers={"Link": ", ".join(links)} if links else None)
