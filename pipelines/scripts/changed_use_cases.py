"""Which use cases a run must build: output variable `<use case>` = true|false for each one
(names with - written as _), read by the stages as `dependencies.Checks.outputs['Changes.changes.<uc>']`.

A file under configs/<uc>/, flows/<uc>/ or datasets/<uc>/ marks that use case; a file anywhere else
(src/, pipelines/, pyproject.toml, ...) marks all of them. The change is measured against
- a pull request: the merge base with its target branch;
- a push: per use case, the commit that was last *deployed* to the environment this branch
  releases to (dev for development, prod for main and release/*; `ado_rest.deployed_runs`). A run
  that failed, or whose approval was rejected or timed out, deployed nothing, so the next push
  builds that use case again instead of dropping it.
A use case never deployed there runs. When the base cannot be worked out (shallow clone, API
unreachable, commit unknown), that use case runs: a missed use case would skip its gates and its
release, an extra one only costs time.

    python pipelines/scripts/changed_use_cases.py --use-cases classification,qa
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ado_rest import AdoError, deployed_env, deployed_runs, log_issue, set_variable

USE_CASE_FOLDERS = ("configs", "flows", "datasets")


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def pull_request_base() -> str:
    target = os.environ.get("SYSTEM_PULLREQUEST_TARGETBRANCH", "").removeprefix("refs/heads/")
    if not target:
        raise RuntimeError("SYSTEM_PULLREQUEST_TARGETBRANCH is not set")
    return git("merge-base", "HEAD", f"origin/{target}")


def deployed_commit(env: str, use_case: str) -> str:
    """The commit of the newest run that deployed `use_case` to `env` (RuntimeError when none)."""
    for run, _ in deployed_runs(env, use_case):
        if run and run.get("sourceVersion"):
            sha = run["sourceVersion"]
            git("cat-file", "-e", f"{sha}^{{commit}}")
            return sha
    raise RuntimeError(f"{use_case} was never deployed to {env}")


def changed_files(base: str) -> list[str]:
    return [f for f in git("diff", "--name-only", base, "HEAD").splitlines() if f]


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
    marked: set[str] = set()
    if os.environ.get("BUILD_REASON") == "PullRequest":
        try:
            base = pull_request_base()
            files = changed_files(base)
            marked = changed_use_cases(files, use_cases)
            print(f"{len(files)} file(s) changed since {base[:12]}: {', '.join(sorted(marked)) or 'no use case'}")
        except RuntimeError as exc:
            log_issue("warning", f"cannot tell what changed ({exc}): running every use case")
            marked = set(use_cases)
    else:
        env = deployed_env()
        for use_case in use_cases:
            try:
                base = deployed_commit(env, use_case)
                files = changed_files(base)
            except AdoError as exc:
                log_issue("warning", f"cannot tell what changed for {use_case} ({exc}): running it")
                marked.add(use_case)
                continue
            except RuntimeError as exc:
                print(f"{use_case}: runs ({exc})")
                marked.add(use_case)
                continue
            if use_case in changed_use_cases(files, [use_case]):
                print(f"{use_case}: runs ({len(files)} file(s) changed since {base[:12]}, deployed to {env})")
                marked.add(use_case)
            else:
                print(f"{use_case}: unchanged since {base[:12]}, deployed to {env}")
    for use_case in use_cases:
        set_variable(use_case.replace("-", "_"), "true" if use_case in marked else "false", output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
