"""Find the evaluation of the version deployed now, for the regression gates: the newest completed
run of this pipeline that really deployed the use case (`ado_rest.deployed_runs`: tagged
`deployed-<env>-<use case>`, of a branch allowed to deploy there - never a pull request, which
could tag itself - and whose deploy stage succeeded) and its `evidence-<use case>-<attempt>`
artifact (summary.json inside). Sets `baselineRunId`, `baselineArtifact` and `baselineSummary`
for the download step and evaluate; all empty when nothing was deployed yet.

`--deployed-env auto`: prod for runs of main and release/*, dev otherwise. The run's overall result
does not matter (another use case may have failed). An unreachable API fails the step: gates
against a silently missing baseline would pass what they should compare.

    python pipelines/scripts/find_baseline.py --use-case classification --deployed-env auto --target DIR
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ado_rest import AdoError, ado_get, deployed_env, deployed_runs, log_issue, set_variable


def evidence_artifact(run_id: int, use_case: str) -> str | None:
    """The latest attempt's evidence artifact of that run."""
    names = [a.get("name", "") for a in ado_get(f"build/builds/{run_id}/artifacts").get("value") or []]
    attempts = [(int(m.group(1)), n) for n in names if (m := re.fullmatch(rf"evidence-{re.escape(use_case)}-(\d+)", n))]
    return max(attempts)[1] if attempts else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", required=True)
    parser.add_argument("--deployed-env", default="auto", choices=["auto", "dev", "prod"])
    parser.add_argument("--target", required=True, help="where the download step puts the artifact")
    args = parser.parse_args(argv)
    env = deployed_env(args.deployed_env)
    tag = f"deployed-{env}-{args.use_case}"
    run = None
    try:
        for run, ignored in deployed_runs(env, args.use_case):
            if run:
                break
            log_issue("warning", f"{ignored}: not a baseline")
        artifact = evidence_artifact(int(run["id"]), args.use_case) if run else None
    except AdoError as exc:
        log_issue("error", f"cannot look up the deployed version: {exc}")
        return 1
    if run and not artifact:
        log_issue("error", f"run {run['id']} is tagged {tag} but has no evidence-{args.use_case}-* artifact")
        return 1
    if not run:
        print(f"no run has deployed {args.use_case} to {env} yet ({tag}): evaluating without a baseline")
    else:
        print(f"baseline: run {run['id']} ({run.get('buildNumber')}), artifact {artifact}")
    set_variable("baselineRunId", str(run["id"]) if run else "")
    set_variable("baselineArtifact", artifact or "")
    set_variable("baselineSummary", os.path.join(args.target, "summary.json") if run else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
