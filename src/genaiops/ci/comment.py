"""The sticky verdict comment: one comment per pull request and use case, found again by its hidden
marker (`reports.comment.marker`) and updated in place on every push, never posted twice. The body
is redacted here, the last thing before it leaves the machine. GitHub: the issue comments of the PR
(`ci.github`); Azure DevOps: the PR's threads (`ci.azure_devops`)."""

from __future__ import annotations

from typing import Protocol

from genaiops.secrets import redact

LIMITS = {"github": 65536, "azure_devops": 150000}  # characters a comment may hold
TRUNCATED = "\n\n... (cut to fit the comment; the full report has everything)\n"


class PullRequestComments(Protocol):
    platform: str

    def find(self, marker: str) -> list[str]:
        """Ids of the comments carrying `marker`, oldest first."""
        ...

    def create(self, body: str) -> str: ...

    def update(self, comment_id: str, body: str) -> None: ...


def fit(body: str, limit: int) -> str:
    return body if len(body) <= limit else body[: limit - len(TRUNCATED)] + TRUNCATED


def upsert(target: PullRequestComments, marker: str, body: str) -> dict:
    """Update the comment carrying `marker` (the oldest, if a race made two), or create it."""
    if marker not in body:
        body = f"{marker}\n{body}"
    body = fit(redact(body), LIMITS.get(target.platform, 65536))
    found = target.find(marker)
    if found:
        target.update(found[0], body)
        return {"action": "updated", "id": found[0], "duplicates": found[1:]}
    return {"action": "created", "id": target.create(body), "duplicates": []}
