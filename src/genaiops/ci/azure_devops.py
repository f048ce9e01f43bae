"""Azure DevOps pull-request threads (Azure Repos), as a PR validation run reaches them with
System.AccessToken (mapped into the step's env as SYSTEM_ACCESSTOKEN; the build service needs
"Contribute to pull requests" on the repository):

  GET   {collection}{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads
  POST  .../pullRequests/{pr}/threads                        {"comments": [...], "status": "active"}
  PATCH .../pullRequests/{pr}/threads/{thread}/comments/{comment}   {"content": ...}

all with api-version 7.1. The sticky comment is the first comment of the thread that carries the
marker."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

import httpx

from genaiops.errors import GenaiopsError, UsageError

API_VERSION = "7.1"
ENV_NAMES = ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_REPOSITORY_ID",
             "SYSTEM_PULLREQUEST_PULLREQUESTID", "SYSTEM_ACCESSTOKEN")


class AdoCommentError(GenaiopsError):
    """Azure DevOps answered with an error, not JSON, or not at all (exit 1)."""


@dataclass(frozen=True)
class AdoPullRequest:
    collection_uri: str
    project: str
    repository: str  # Build.Repository.ID
    number: int
    token: str

    @classmethod
    def from_env(cls, environ: dict | None = None, number: int | None = None) -> AdoPullRequest:
        env = os.environ if environ is None else environ
        missing = [n for n in ENV_NAMES if not env.get(n)
                   and not (n == "SYSTEM_PULLREQUEST_PULLREQUESTID" and number)]
        if missing:
            raise UsageError(f"the Azure DevOps PR comment needs {', '.join(missing)} (not set)",
                             hint="run it in a pull-request validation run and map SYSTEM_ACCESSTOKEN: "
                                  "$(System.AccessToken) into the step's env")
        try:
            pr = int(number or env["SYSTEM_PULLREQUEST_PULLREQUESTID"])
        except ValueError:
            raise UsageError("SYSTEM_PULLREQUEST_PULLREQUESTID must be a number") from None
        return cls(env["SYSTEM_COLLECTIONURI"], env["SYSTEM_TEAMPROJECT"], env["BUILD_REPOSITORY_ID"], pr,
                   env["SYSTEM_ACCESSTOKEN"])


def answer_object(response: httpx.Response, what: str, error: type[GenaiopsError],
                  access_hint: str) -> dict[str, Any]:
    """An Azure DevOps REST answer's JSON object; `error` (with `access_hint` on 401/403) when it
    is not a 200 with a JSON object."""
    if response.status_code != 200:
        hint = access_hint if response.status_code in (401, 403) else None
        raise error(f"Azure DevOps answered HTTP {response.status_code} for {what}", hint=hint)
    try:
        data = response.json()
    except ValueError as exc:
        raise error(f"Azure DevOps answer for {what} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"Azure DevOps answer for {what} is not an object")
    return cast("dict[str, Any]", data)


class AdoPrThreads:
    platform = "azure_devops"

    def __init__(self, pr: AdoPullRequest, timeout: float = 30.0):
        self.pr, self.timeout = pr, timeout

    def _call(self, method: str, path: str, body=None) -> dict:
        base = (f"{self.pr.collection_uri.rstrip('/')}/{urllib.parse.quote(self.pr.project)}/_apis/git/"
                f"repositories/{urllib.parse.quote(self.pr.repository)}/pullRequests/{self.pr.number}/")
        what = f"{method} pullRequests/{self.pr.number}/{path.split('/')[0]}"
        try:
            response = httpx.request(method, base + path, params={"api-version": API_VERSION}, json=body,
                                     headers={"Authorization": f"Bearer {self.pr.token}",
                                              "Accept": "application/json"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise AdoCommentError(f"cannot reach Azure DevOps ({what}): {type(exc).__name__}: {exc}") from None
        return answer_object(response, what, AdoCommentError, "give the project's Build Service identity "
                             "'Contribute to pull requests' on the repository")

    def find(self, marker: str) -> list[str]:
        found = []
        for thread in self._call("GET", "threads").get("value") or []:
            comments = [c for c in thread.get("comments") or [] if not c.get("isDeleted")]
            if comments and marker in str(comments[0].get("content") or ""):
                found.append(f"{thread['id']}/{comments[0]['id']}")
        return found

    def create(self, body: str) -> str:
        thread = self._call("POST", "threads", {"comments": [{"parentCommentId": 0, "content": body,
                                                              "commentType": "text"}], "status": "active"})
        return f"{thread['id']}/{thread['comments'][0]['id']}"

    def update(self, comment_id: str, body: str) -> None:
        thread, comment = comment_id.split("/")
        self._call("PATCH", f"threads/{thread}/comments/{comment}", {"content": body})
