"""The GitHub REST API as a workflow run reaches it: `GITHUB_API_URL` (api.github.com, or a GitHub
Enterprise Server's /api/v3), `GITHUB_REPOSITORY` (owner/repo) and the job's `GITHUB_TOKEN` sent as a
bearer token, with the documented media type and API version headers. List endpoints are followed
through their `Link: <...>; rel="next"` headers. Every failure is a `GitHubApiError` naming the call
(exit 1): callers turn it into a refusal or a failed step, never into a pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import httpx

from genaiops.errors import GenaiopsError, UsageError

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
PER_PAGE = 100
MAX_PAGES = 50  # 5,000 items: a run's jobs or a PR's comments never come near it
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class GitHubApiError(GenaiopsError):
    """GitHub answered with an error, not JSON, or not at all (exit 1)."""


@dataclass(frozen=True)
class GitHubRepo:
    api_url: str  # https://api.github.com
    repository: str  # owner/repo
    token: str

    @classmethod
    def from_env(cls, environ: dict | None = None, *, why: str = "genaiops") -> GitHubRepo:
        env = os.environ if environ is None else environ
        missing = [n for n in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(n)]
        if missing:
            raise UsageError(f"{why} needs {', '.join(missing)} (not set)",
                             hint="run inside the GitHub Actions job and map GITHUB_TOKEN: "
                                  "${{ github.token }} into the step's env")
        repository = env["GITHUB_REPOSITORY"]
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise UsageError(f"GITHUB_REPOSITORY={repository!r} is not owner/repo")
        return cls(env.get("GITHUB_API_URL") or "https://api.github.com", repository, env["GITHUB_TOKEN"])


class GitHubApi:
    """A few REST calls on one repository (paths below are relative to /repos/{owner}/{repo}/)."""

    def __init__(self, repo: GitHubRepo, timeout: float = 30.0):
        self.repo = repo
        self.timeout = timeout

    def _url(self, path: str) -> str:
        return f"{self.repo.api_url.rstrip('/')}/repos/{self.repo.repository}/{path.lstrip('/')}"

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.repo.token}", "Accept": MEDIA_TYPE,
                "X-GitHub-Api-Version": API_VERSION, "User-Agent": "genaiops"}

    def request(self, method: str, path: str, *, url: str | None = None, json=None,
                params: dict | None = None, expect: tuple[int, ...] = (200,)) -> httpx.Response:
        what = f"{method} {path.split('?')[0]}"
        try:
            response = httpx.request(method, url or self._url(path), params=params, json=json,
                                     headers=self._headers(), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise GitHubApiError(f"cannot reach GitHub ({what}): {type(exc).__name__}: {exc}") from None
        if response.status_code not in expect:
            message = ""
            try:
                message = str(response.json().get("message", ""))[:200]
            except (ValueError, AttributeError):
                pass
            hint = None
            if response.status_code in (401, 403, 404):
                hint = ("give the job's GITHUB_TOKEN the permission this call needs (`permissions:` in "
                        "the workflow: actions: read for runs and approvals, pull-requests: write for "
                        "PR comments)")
            raise GitHubApiError(f"GitHub answered HTTP {response.status_code} for {what}"
                                 + (f": {message}" if message else ""), hint=hint)
        return response

    def get(self, path: str, **params) -> dict | list:
        response = self.request("GET", path, params=params or None)
        try:
            return response.json()
        except ValueError as exc:
            raise GitHubApiError(f"GitHub's answer to GET {path} is not JSON ({exc})") from None

    def get_object(self, path: str, **params) -> dict:
        data = self.get(path, **params)
        if not isinstance(data, dict):
            raise GitHubApiError(f"GitHub's answer to GET {path} is not an object")
        return data

    def paginate(self, path: str, key: str | None = None, **params) -> list:
        """Every item of a list endpoint, following `Link: rel="next"` (`key`: the list's field in
        an object answer, e.g. `jobs`; None for a bare array)."""
        items: list = []
        url, query = None, {**params, "per_page": PER_PAGE}
        for _ in range(MAX_PAGES):
            response = self.request("GET", path, url=url, params=None if url else query)
            try:
                data = response.json()
            except ValueError as exc:
                raise GitHubApiError(f"GitHub's answer to GET {path} is not JSON ({exc})") from None
            page = data.get(key) if key and isinstance(data, dict) else data
            if not isinstance(page, list):
                raise GitHubApiError(f"GitHub's answer to GET {path} has no list"
                                     + (f" {key!r}" if key else ""))
            items.extend(page)
            found = _NEXT.search(response.headers.get("Link", ""))
            if not found:
                return items
            url = found.group(1)
        raise GitHubApiError(f"GET {path}: more than {MAX_PAGES} pages")


def pull_request_number(environ: dict | None = None) -> int | None:
    """The PR of a `pull_request` run, from the event payload GitHub writes to GITHUB_EVENT_PATH."""
    import json

    env = os.environ if environ is None else environ
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        event = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError):
        return None
    number = (event.get("pull_request") or {}).get("number") if isinstance(event, dict) else None
    return number if isinstance(number, int) else None


class GitHubPrComments:
    """A pull request's conversation comments (the issues comments API; `pull-requests: write`)."""

    platform = "github"

    def __init__(self, api: GitHubApi, number: int):
        self.api, self.number = api, number

    def find(self, marker: str) -> list[str]:
        comments = self.api.paginate(f"issues/{self.number}/comments")
        return [str(c["id"]) for c in comments if isinstance(c, dict) and marker in str(c.get("body") or "")]

    def create(self, body: str) -> str:
        return str(self.api.request("POST", f"issues/{self.number}/comments", json={"body": body},
                                    expect=(201,)).json()["id"])

    def update(self, comment_id: str, body: str) -> None:
        self.api.request("PATCH", f"issues/comments/{comment_id}", json={"body": body})
