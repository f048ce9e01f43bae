"""The evaluation of the version deployed now, for the regression gates, on GitHub: the newest
unexpired artifact named `deployed-<env>-<use case>` (uploaded by a deploy job only after its deploy
and smoke test passed; it holds that release's summary.json and evidence.json), downloaded into
--target. Sets the step outputs `summary` (the path, empty when nothing was deployed yet) and
`run_id`. `--deployed-env auto`: prod on main, dev elsewhere (as on Azure DevOps).

    GET /repos/{owner}/{repo}/actions/artifacts?name=deployed-<env>-<uc>      (newest first)
    GET /repos/{owner}/{repo}/actions/artifacts/{id}/zip                      (302 to the archive)

An API that cannot be read fails the step: gates against a silently missing baseline would pass
what they should compare. Needs `actions: read`; the token goes to the API only, never to the
archive's redirect.

    python .github/scripts/find_baseline.py --use-case classification --deployed-env auto --target DIR
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

API_VERSION = "2022-11-28"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the caller follows it without the token


def _api(path: str, **params) -> urllib.request.Request:
    base = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return urllib.request.Request(f"{base}/repos/{os.environ['GITHUB_REPOSITORY']}/{path}{query}", headers={
        "Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}", "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION, "User-Agent": "genaiops-find-baseline"})


def newest_artifact(name: str) -> dict | None:
    with urllib.request.urlopen(_api("actions/artifacts", name=name, per_page="100"), timeout=30) as response:
        data = json.loads(response.read())
    live = [a for a in data.get("artifacts") or [] if a.get("name") == name and not a.get("expired")]
    return max(live, key=lambda a: a.get("created_at") or "") if live else None


def download(artifact: dict, target: Path) -> None:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        response = opener.open(_api(f"actions/artifacts/{artifact['id']}/zip"), timeout=60)
        data = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code not in (301, 302, 303, 307, 308) or not exc.headers.get("Location"):
            raise
        with urllib.request.urlopen(exc.headers["Location"], timeout=120) as redirected:  # no token
            data = redirected.read()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise ValueError(f"unsafe path in the artifact: {member}")
        archive.extractall(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", required=True)
    parser.add_argument("--deployed-env", default="auto", choices=["auto", "dev", "prod"])
    parser.add_argument("--target", type=Path, required=True)
    args = parser.parse_args(argv)
    env = args.deployed_env
    if env == "auto":
        env = "prod" if os.environ.get("GITHUB_REF") == "refs/heads/main" else "dev"
    name = f"deployed-{env}-{args.use_case}"
    try:
        artifact = newest_artifact(name)
        if artifact:
            download(artifact, args.target)
    except (urllib.error.URLError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        print(f"::error::cannot get the deployed version ({name}): {exc}")
        return 1
    summary = args.target / "summary.json"
    if artifact and not summary.is_file():
        print(f"::error::artifact {name} ({artifact['id']}) holds no summary.json")
        return 1
    if artifact:
        run = (artifact.get("workflow_run") or {}).get("id", "")
        print(f"baseline: artifact {name} of run {run}")
    else:
        print(f"no artifact {name} yet: evaluating without a baseline")
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write(f"summary={summary if artifact else ''}\n")
        output.write(f"run_id={(artifact.get('workflow_run') or {}).get('id', '') if artifact else ''}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
