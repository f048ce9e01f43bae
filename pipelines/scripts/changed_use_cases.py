"""Which use cases a run must build: output variable `<use case>` = true|false for each one
(names with - written as _), read by the stages as `dependencies.Checks.outputs['Changes.changes.<uc>']`.

A file under configs/<uc>/, flows/<uc>/ or datasets/<uc>/ marks that use case; a file anywhere else
(src/, pipelines/, pyproject.toml, ...) marks all of them. The change is measured against
- a pull request: the merge base with its target branch;
- a push: the commit of the last completed run of this pipeline on the same branch.
When that cannot be worked out (first run, shallow clone, API unreachable), every use case runs:
a missed use case would skip its gates, an extra one only costs time.

    python pipelines/scripts/changed_use_cases.py --use-cases classification,qa
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ado_rest import AdoError, ado_get, log_issue, set_variable

USE_CASE_FOLDERS = ("configs", "flows", "datasets")


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def base_commit() -> str:
    """The commit this run's changes are measured against (RuntimeError when unknown)."""
    if os.environ.get("BUILD_REASON") == "PullRequest":
        target = os.environ.get("SYSTEM_PULLREQUEST_TARGETBRANCH", "").removeprefix("refs/heads/")
        if not target:
            raise RuntimeError("SYSTEM_PULLREQUEST_TARGETBRANCH is not set")
        return git("merge-base", "HEAD", f"origin/{target}")
    branch = os.environ.get("BUILD_SOURCEBRANCH", "")
    try:
        runs = ado_get("build/builds", definitions=os.environ.get("SYSTEM_DEFINITIONID", ""), branchName=branch,
                       statusFilter="completed", queryOrder="finishTimeDescending", **{"$top": "1"})
    except AdoError as exc:
        raise RuntimeError(str(exc)) from None
    previous = [r for r in runs.get("value") or [] if r.get("sourceVersion")]
    if not previous:
        raise RuntimeError(f"no earlier run on {branch}")
    sha = previous[0]["sourceVersion"]
    git("cat-file", "-e", f"{sha}^{{commit}}")
    return sha


def changed_use_cases(files: list[str], use_cases: list[str]) -> set[str]:
    marked: set[str] = set()
    for path in files:
        parts = path.split("/")
        if len(parts) > 2 and parts[0] in USE_CASE_FOLDERS:
            if parts[1] in use_cases:
                marked.add(parts[1])
            continue  # another use case's folder, not in this pipeline
        return set(use_cases)  # shared code or pipeline: everything
    return marked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-cases", required=True, help="comma-separated, as in azure-pipelines.yml")
    args = parser.parse_args(argv)
    use_cases = [u.strip() for u in args.use_cases.split(",") if u.strip()]
    try:
        base = base_commit()
        files = [f for f in git("diff", "--name-only", base, "HEAD").splitlines() if f]
        marked = changed_use_cases(files, use_cases)
        print(f"{len(files)} file(s) changed since {base[:12]}: {', '.join(sorted(marked)) or 'no use case'}")
    except RuntimeError as exc:
        log_issue("warning", f"cannot tell what changed ({exc}): running every use case")
        marked = set(use_cases)
    for use_case in use_cases:
        set_variable(use_case.replace("-", "_"), "true" if use_case in marked else "false", output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
