"""Azure DevOps, as the pipeline and genaiops read it: one project of one organisation, with the
runs the agent emulation (`pipeline_agent.py`) executes. Served over HTTP on 127.0.0.1:

  GET /{org}/{project}/_apis/build/builds/{id}                   one run (requestedFor, requestedBy)
  GET /{org}/{project}/_apis/build/builds/{id}/timeline          the run's timeline records: tasks with
      the display name as the service recorded it (macros expanded), state, result, finishTime
  GET /{org}/{project}/_apis/pipelines/approvals/{id}            one approval (environment check)
  GET /{org}/{project}/_apis/build/builds?definitions=&tagFilters=&statusFilter=completed
      &queryOrder=finishTimeDescending&$top=                     runs by tag, newest first
  GET /{org}/{project}/_apis/build/builds/{id}/artifacts         a run's artifacts (names)
  GET|POST /{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads      PR threads
  PATCH    .../pullRequests/{pr}/threads/{thread}/comments/{comment}                     edit a comment

Each request needs `Authorization: Bearer <that run's System.AccessToken>` (any run's token reads
the project, as the build service identity can). The store (`runs`, `approvals`) is what the agent
emulation writes; tests read it too.
"""

from __future__ import annotations

import itertools
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from fakes.http import FakeServer, JsonHandler

ORG, PROJECT, PROJECT_ID, DEFINITION_ID = "contoso", "GenAI Ops", "6f2ed2d5-0000-4000-8000-000000000001", "17"


@dataclass
class Run:
    id: int
    branch: str  # refs/heads/...
    reason: str  # IndividualCI | PullRequest | Manual
    token: str
    requested_for: str
    source_version: str
    timeline: list[dict] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)  # name -> stored folder
    status: str = "inProgress"
    result: str | None = None
    finished: int = 0

    def rest(self) -> dict:
        return {"id": self.id, "buildNumber": f"2026.{self.id}", "status": self.status, "result": self.result,
                "sourceBranch": self.branch, "sourceVersion": self.source_version, "reason": self.reason.lower(), "tags": list(self.tags),
                "definition": {"id": int(DEFINITION_ID)}, "finishTime": f"2026-01-01T00:00:{self.finished:02d}Z",
                "requestedFor": {"uniqueName": self.requested_for, "displayName": self.requested_for.split("@")[0]},
                "requestedBy": {"uniqueName": self.requested_for, "displayName": self.requested_for.split("@")[0]}}


class FakeAzureDevOps(FakeServer):
    def __init__(self):
        super().__init__(_Handler)
        self.runs: dict[int, Run] = {}
        self.approvals: dict[str, dict] = {}
        self.threads: dict[tuple[str, int], list[dict]] = {}  # (repository id, PR id) -> threads
        self._thread_ids = itertools.count(1)
        self._ids = itertools.count(100)
        self._clock = itertools.count(1)

    @property
    def collection_uri(self) -> str:
        return f"{self.url}/{ORG}/"

    def new_run(self, branch: str, reason: str, requested_for: str, source_version: str) -> Run:
        run = Run(next(self._ids), branch, reason, "ado-" + secrets.token_hex(12), requested_for, source_version)
        self.runs[run.id] = run
        return run

    def finish(self, run: Run, result: str) -> None:
        run.status, run.result, run.finished = "completed", result, next(self._clock)


class _Handler(JsonHandler):
    server: FakeAzureDevOps

    def route(self) -> None:
        prefix = f"/{ORG}/{urllib.parse.quote(PROJECT)}/_apis/"
        if not self.path_only.startswith(prefix):
            return self.send(404, {"message": f"no such project path {self.path_only}"})
        tokens = {f"Bearer {r.token}" for r in self.server.runs.values()}
        if self.headers.get("Authorization") not in tokens:
            return self.send(401, {"message": "TF400813: The user is not authorized to access this resource."})
        if self.query.get("api-version") != "7.1":
            return self.send(400, {"message": "api-version 7.1 expected"})
        parts = self.path_only[len(prefix):].strip("/").split("/")
        if parts[:2] == ["build", "builds"] and len(parts) == 2:
            return self._builds()
        if parts[:2] == ["build", "builds"] and len(parts) == 3:
            run = self.server.runs.get(int(parts[2])) if parts[2].isdigit() else None
            return self.send(200, run.rest()) if run else self.send(404, {"message": f"build {parts[2]} not found"})
        if parts[:2] == ["build", "builds"] and len(parts) == 4:
            run = self.server.runs.get(int(parts[2])) if parts[2].isdigit() else None
            if run is None:
                return self.send(404, {"message": f"build {parts[2]} not found"})
            if parts[3] == "timeline":
                return self.send(200, {"records": run.timeline, "id": str(run.id)})
            if parts[3] == "artifacts":
                return self.send(200, {"count": len(run.artifacts),
                                       "value": [{"name": n, "resource": {"type": "PipelineArtifact"}}
                                                 for n in sorted(run.artifacts)]})
        if parts[:2] == ["git", "repositories"] and len(parts) >= 6 and parts[3] == "pullRequests" \
                and parts[5] == "threads" and parts[4].isdigit():
            return self._threads(self.server.threads.setdefault((parts[2], int(parts[4])), []), parts[6:])
        if parts[:2] == ["pipelines", "approvals"] and len(parts) == 3:
            approval = self.server.approvals.get(parts[2])
            return self.send(200, approval) if approval else self.send(404, {"message": "approval not found"})
        return self.send(404, {"message": f"fake Azure DevOps does not serve {self.path_only}"})

    def _builds(self) -> None:
        runs = [r for r in self.server.runs.values() if r.status == "completed"]
        if self.query.get("definitions") not in (None, DEFINITION_ID):
            runs = []
        wanted = [t for t in (self.query.get("tagFilters") or "").split(",") if t]
        runs = [r for r in runs if all(t in r.tags for t in wanted)]
        if self.query.get("branchName"):
            runs = [r for r in runs if r.branch == self.query["branchName"]]
        if self.query.get("resultFilter"):
            allowed = self.query["resultFilter"].split(",")
            runs = [r for r in runs if r.result in allowed]
        runs.sort(key=lambda r: r.finished, reverse=self.query.get("queryOrder") != "finishTimeAscending")
        top = int(self.query.get("$top", len(runs) or 1))
        self.send(200, {"count": len(runs[:top]), "value": [r.rest() for r in runs[:top]]})

    def _threads(self, threads: list[dict], rest: list[str]) -> None:
        """A PR's threads as Azure DevOps keeps them: each with its comments; the author is the
        token's identity (the project's build service)."""
        author = {"displayName": "GenAI Ops Build Service (contoso)", "uniqueName": "Build\\" + PROJECT_ID}
        if not rest and self.command == "GET":
            return self.send(200, {"value": threads, "count": len(threads)})
        if not rest and self.command == "POST":
            comments = (self.body or {}).get("comments")
            if not isinstance(comments, list) or not comments or not all(
                    isinstance(c, dict) and isinstance(c.get("content"), str) for c in comments):
                return self.send(400, {"message": "A thread needs at least one comment with content."})
            if any(len(c["content"]) > 150000 for c in comments):
                return self.send(400, {"message": "The comment content is too long."})
            thread = {"id": next(self.server._thread_ids), "status": (self.body or {}).get("status", "active"),
                      "comments": [{"id": n + 1, "parentCommentId": c.get("parentCommentId", 0),
                                    "content": c["content"], "commentType": c.get("commentType", "text"),
                                    "author": author, "isDeleted": False} for n, c in enumerate(comments)]}
            threads.append(thread)
            return self.send(200, thread)
        if len(rest) == 3 and rest[1] == "comments" and self.command == "PATCH":
            for thread in threads:
                if str(thread["id"]) == rest[0]:
                    for comment in thread["comments"]:
                        if str(comment["id"]) == rest[2]:
                            content = (self.body or {}).get("content")
                            if not isinstance(content, str):
                                return self.send(400, {"message": "content is required"})
                            comment["content"] = content
                            return self.send(200, comment)
            return self.send(404, {"message": "comment not found"})
        return self.send(405, {"message": f"{self.command} is not supported here"})
