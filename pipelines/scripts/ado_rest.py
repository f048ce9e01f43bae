"""The Azure DevOps REST calls the pipeline scripts make, with the run's own identity.

Standard library only: the scripts run before `make setup` too. The token is System.AccessToken,
mapped into the step's env as SYSTEM_ACCESSTOKEN; the organisation and project come from the
agent's predefined variables.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

API_VERSION = "7.1"


class AdoError(Exception):
    pass


def ado_get(path: str, **params) -> dict:
    """GET {collection}{project}/_apis/{path}?{params}&api-version=7.1 as JSON."""
    missing = [n for n in ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "SYSTEM_ACCESSTOKEN") if not os.environ.get(n)]
    if missing:
        raise AdoError(f"{', '.join(missing)} not set (map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into env)")
    base = os.environ["SYSTEM_COLLECTIONURI"].rstrip("/") + "/" + urllib.parse.quote(os.environ["SYSTEM_TEAMPROJECT"])
    query = urllib.parse.urlencode({**params, "api-version": API_VERSION})
    request = urllib.request.Request(f"{base}/_apis/{path}?{query}", headers={
        "Authorization": f"Bearer {os.environ['SYSTEM_ACCESSTOKEN']}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AdoError(f"Azure DevOps answered HTTP {exc.code} for {path}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AdoError(f"cannot read {path} from Azure DevOps: {exc}") from None


# Branches whose runs may deploy to an environment (the stage conditions and the environments'
# branch control say the same): a pull request or any other branch never counts as deployed.
PROTECTED_BRANCHES = {"dev": ("refs/heads/development", "refs/heads/main", "refs/heads/release/"),
                      "prod": ("refs/heads/main", "refs/heads/release/")}
# The stage of a run that deploys a use case to an environment (pipelines/stages/dev.yml, prod.yml).
DEPLOY_STAGE = {"dev": "DeployDev_{uc}", "prod": "Prod_{uc}"}
SEARCHED_RUNS = 50


def deployed_env(requested: str = "auto") -> str:
    """`auto`: prod for runs of main and release/*, dev otherwise."""
    if requested != "auto":
        return requested
    branch = os.environ.get("BUILD_SOURCEBRANCH", "")
    return "prod" if branch == "refs/heads/main" or branch.startswith("refs/heads/release/") else "dev"


def _protected(branch: str, env: str) -> bool:
    return any(branch == p or (p.endswith("/") and branch.startswith(p)) for p in PROTECTED_BRANCHES[env])


def deploy_stage_succeeded(run_id: int, env: str, use_case: str) -> bool:
    """Whether the run's timeline shows the stage that deploys `use_case` to `env` completed and
    succeeded: a tag alone can be added by any step of any run (`##vso[build.addbuildtag]`)."""
    stage = DEPLOY_STAGE[env].format(uc=use_case.replace("-", "_"))
    records = ado_get(f"build/builds/{run_id}/timeline").get("records") or []
    return any(r.get("type") == "Stage" and r.get("identifier") == stage and r.get("state") == "completed"
               and r.get("result") in ("succeeded", "succeededWithIssues") for r in records)


def deployed_runs(env: str, use_case: str):
    """Completed runs, newest first, that really deployed `use_case` to `env`: tagged
    `deployed-<env>-<uc>`, of a branch allowed to deploy there (never a pull request), and whose
    deploy stage succeeded in the timeline. Yields (run, "") for those, and (None, reason) for each
    tagged run passed over, so callers can say what they ignored."""
    tag = f"deployed-{env}-{use_case}"
    runs = ado_get("build/builds", definitions=os.environ.get("SYSTEM_DEFINITIONID", ""), tagFilters=tag,
                   statusFilter="completed", queryOrder="finishTimeDescending", **{"$top": str(SEARCHED_RUNS)})
    for run in runs.get("value") or []:
        branch, reason = str(run.get("sourceBranch", "")), str(run.get("reason", "")).lower()
        if reason == "pullrequest" or not _protected(branch, env):
            yield None, f"run {run.get('id')} ({branch}, {reason}) is tagged {tag} but may not deploy to {env}"
        elif not deploy_stage_succeeded(int(run["id"]), env, use_case):
            yield None, f"run {run.get('id')} is tagged {tag} but its deploy stage did not succeed"
        else:
            yield run, ""


def set_variable(name: str, value: str, *, output: bool = False) -> None:
    """A pipeline variable for later steps (and jobs, when `output`); values are single-line."""
    value = value.replace("\r", " ").replace("\n", " ").replace("##", "#")
    flag = ";isOutput=true" if output else ""
    print(f"##vso[task.setvariable variable={name}{flag}]{value}")


def log_issue(kind: str, message: str) -> None:
    print(f"##vso[task.logissue type={kind}]{message}", file=sys.stderr if kind == "error" else sys.stdout)
