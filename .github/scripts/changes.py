"""Which use cases a GitHub Actions run must build: the output `use_cases`, a JSON list for a job
matrix. The same rule as Azure DevOps (`pipelines/scripts/changed_use_cases.py`): a file under
configs/<uc>/, flows/<uc>/ or datasets/<uc>/ marks that use case, a file anywhere else marks all.
The change is measured against
- a pull request: the merge base with its base branch (`GITHUB_BASE_REF`, fetched as origin/<base>);
- a push: the commit before the push (`before` in the event payload).
When that cannot be worked out (a new branch, a force push, a shallow clone), every use case runs.
Standard library only.

    python .github/scripts/changes.py --use-cases classification,qa
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines" / "scripts"))
from changed_use_cases import changed_use_cases, git  # noqa: E402  (the one rule, shared with Azure DevOps)

NO_COMMIT = "0" * 40


def base_commit(environ=os.environ) -> str:
    if environ.get("GITHUB_EVENT_NAME") in ("pull_request", "pull_request_target"):
        base = environ.get("GITHUB_BASE_REF", "")
        if not base:
            raise RuntimeError("GITHUB_BASE_REF is not set")
        return git("merge-base", "HEAD", f"origin/{base}")
    try:
        event = json.loads(Path(environ.get("GITHUB_EVENT_PATH", "")).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the event payload: {exc}") from None
    before = event.get("before") or ""
    if not before or before == NO_COMMIT:
        raise RuntimeError("the push has no earlier commit (a new branch)")
    git("cat-file", "-e", f"{before}^{{commit}}")
    return before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-cases", required=True, help="comma-separated use case names")
    args = parser.parse_args(argv)
    use_cases = [u.strip() for u in args.use_cases.split(",") if u.strip()]
    try:
        base = base_commit()
        files = [f for f in git("diff", "--name-only", base, "HEAD").splitlines() if f]
        marked = changed_use_cases(files, use_cases)
        print(f"{len(files)} file(s) changed since {base[:12]}: {', '.join(sorted(marked)) or 'no use case'}")
    except RuntimeError as exc:
        print(f"::warning::cannot tell what changed ({exc}): running every use case")
        marked = set(use_cases)
    chosen = [u for u in use_cases if u in marked]
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write(f"use_cases={json.dumps(chosen)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
