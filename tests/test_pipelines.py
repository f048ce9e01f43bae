"""Azure DevOps pipelines: schema-valid, commands the real CLI accepts, approval before prod, no
secret in any log or command line.

The schema is the one check-jsonschema vendors (a dev dependency): nothing outside the repository
is read, and no test skips on a fresh clone.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
from pathlib import Path

import pipeline_schema as ps
import pytest
from pipeline_docs import documented_variables

from genaiops.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "azure-pipelines.yml"
MONITOR = REPO / "pipelines" / "monitor.yml"  # the scheduled monitor pipeline: an entry of its own
PIPELINE_FILES = [ENTRY, *sorted((REPO / "pipelines").rglob("*.yml"))]
USE_CASES = ["classification", "qa"]  # the default `useCases` of azure-pipelines.yml
PARITY = [("classification", "classification_maf")]  # the default `parityChecks`

EXPANDED = ps.expand_pipeline(ENTRY)
PIPELINE = EXPANDED.pipeline


def _stage(name: str) -> dict:
    matches = [s for s in PIPELINE["stages"] if s["stage"] == name]
    assert len(matches) == 1, f"stage {name} not found once in {[s['stage'] for s in PIPELINE['stages']]}"
    return matches[0]


def _job(stage: dict, name: str) -> dict:
    matches = [j for j in stage["jobs"] if j.get("job", j.get("deployment")) == name]
    assert len(matches) == 1, f"job {name} not found once in stage {stage['stage']}"
    return matches[0]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------------- schema

@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_pipeline_file_validates_against_the_schema(path):
    assert ps.validate_file(path) == []


def test_expanded_pipeline_validates_and_uses_every_template():
    assert "${{" not in repr(PIPELINE), "a compile-time expression survived expansion"
    assert ps.schema_errors(PIPELINE) == []
    templates = {p.resolve() for p in PIPELINE_FILES if p not in (ENTRY, MONITOR)}
    assert EXPANDED.files == templates, "a template is unused or missing"
    assert [s["stage"] for s in PIPELINE["stages"]] == [
        "Checks", "PR_classification", "PR_qa", "Parity_classification_maf", "Dev_classification",
        "DeployDev_classification", "Dev_qa", "DeployDev_qa", "Approve_classification", "Prod_classification",
        "Approve_qa", "Prod_qa"]


def test_monitor_pipeline_expands_validates_and_runs_monitor_per_use_case():
    expanded = ps.expand_pipeline(MONITOR)
    assert "${{" not in repr(expanded.pipeline) and ps.schema_errors(expanded.pipeline) == []
    assert expanded.pipeline["schedules"][0]["cron"] == "0 */6 * * *"
    jobs = [job["job"] for job in expanded.pipeline["jobs"]]
    assert jobs == [f"Monitor_{uc}" for uc in USE_CASES]
    scripts = repr(expanded.pipeline)
    for uc in USE_CASES:
        assert f"genaiops monitor --use-case {uc} --env prod" in scripts


def _first_azure_cli_step(pipeline):
    for _, job in ps.iter_jobs(pipeline):
        for step in ps.job_steps(job):
            if step.get("task") == "AzureCLI@2":
                return step
    raise AssertionError("no AzureCLI@2 step")


def _approval_step(pipeline):
    return _job(next(s for s in pipeline["stages"] if s["stage"].startswith("Approve_")), "Approve")["steps"][0]


BREAKAGES = {
    "unknown key in a step": lambda p: _first_azure_cli_step(p).update(unknownKey="x"),
    "unknown task input": lambda p: _first_azure_cli_step(p)["inputs"].update(inlineScirpt="x"),
    "task timeout not a number": lambda p: _approval_step(p).update(timeoutInMinutes="sixty"),
    "continueOnError not a boolean": lambda p: _approval_step(p).update(continueOnError="maybe"),
    "onTimeout not allowed": lambda p: _approval_step(p)["inputs"].update(onTimeout="ignore"),
    "notifyUsers missing": lambda p: _approval_step(p)["inputs"].pop("notifyUsers"),
    "stage without jobs list": lambda p: p["stages"][0].update(jobs="Checks"),
    "unknown pipeline key": lambda p: p.update(triggers="main"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_schema_check_fails_on_broken_pipeline(breakage):
    broken = copy.deepcopy(PIPELINE)
    BREAKAGES[breakage](broken)
    assert ps.schema_errors(broken), f"{breakage} passed the schema check"


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    shutil.copy(ENTRY, tmp_path / ENTRY.name)
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_broken_template_file_fails_both_checks(repo_copy):
    template = repo_copy / "pipelines/templates/checks.yml"
    _edit(template, "    displayName: Lint (ruff)\n", "    displayName: Lint (ruff)\n    retries: 3\n")
    assert ps.validate_file(template)
    assert ps.schema_errors(ps.expand_pipeline(repo_copy / ENTRY.name).pipeline)


@pytest.mark.parametrize("old,new,message", [
    ("      useCase: ${{ useCase }}\n                  env: pr\n",
     "      useCase: ${{ useCase }}\n                  environment: pr\n", "unexpected parameter"),
    ("                  env: dev\n                  serviceConnection", "                  serviceConnection",
     "required parameter 'env'"),
    ("--env ${{ parameters.env }}", "--env ${{ parameters.environment }}", "undefined reference"),
    ("deployedEnv: auto", "deployedEnv: staging", "not in"),
], ids=["unknown parameter", "missing parameter", "undefined reference", "value not allowed"])
def test_template_expansion_rejects_what_azure_rejects(repo_copy, old, new, message):
    for path in (repo_copy / "pipelines").rglob("*.yml"):
        if old in path.read_text():
            _edit(path, old, new)
            break
    else:
        raise AssertionError(f"{old!r} not found")
    with pytest.raises(ps.TemplateError, match=message):
        ps.expand_pipeline(repo_copy / ENTRY.name)


def test_adding_a_use_case_needs_no_new_yaml(repo_copy):
    _edit(repo_copy / ENTRY.name, "      - qa\n", "      - qa\n      - support-bot\n")
    stages = [s["stage"] for s in ps.expand_pipeline(repo_copy / ENTRY.name).pipeline["stages"]]
    assert {"PR_support_bot", "Dev_support_bot", "Prod_support_bot"} <= set(stages)


# ----------------------------------------------------------------------------- CLI command lines

def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """No prefix matching: a renamed flag must not survive as an abbreviation of the new one."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)
    return parser


def _commands() -> list[list[str]]:
    seen, commands = set(), []
    for _, job in ps.iter_jobs(PIPELINE):
        for step in ps.job_steps(job):
            for command in ps.genaiops_commands(ps.step_script(step) or ""):
                argv = ps.command_argv(command)
                if tuple(argv) not in seen:
                    seen.add(tuple(argv))
                    commands.append(argv)
    return commands


def _param(argv):
    return pytest.param(argv, id=" ".join(argv))


def _parse(argv):
    parser = _strict(build_parser())
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(
            f"genaiops {' '.join(argv)} rejected by the CLI parser (exit {exc.code})") from None


@pytest.mark.parametrize("argv", [_param(a) for a in _commands()])
def test_pipeline_command_parses_with_the_real_cli(argv):
    args = _parse(argv)
    assert callable(getattr(args, "func", None))
    if argv[0] == "compare":
        assert (args.baseline, args.candidate) in PARITY
        assert (REPO / "configs" / args.candidate / "experiment.yaml").is_file()
    else:
        assert getattr(args, "use_case", None) in USE_CASES


def test_pipelines_run_every_phase():
    phases = {tuple(w for w in a[:2] if not w.startswith("-")) for a in _commands()}
    assert {("validate",), ("run", "init"), ("run", "experiment"), ("run", "evaluate"), ("run", "build"),
            ("run", "deploy"), ("compare",)} <= phases


def test_a_renamed_flag_breaks_the_command_check(capsys):
    with pytest.raises(AssertionError, match="rejected by the CLI parser"):
        _parse(["run", "experiment", "--use-case", "qa", "--env", "pr", "--variant", "all"])
    with pytest.raises(AssertionError, match="rejected by the CLI parser"):
        _parse(["run", "experiment", "--use-cas", "qa"])  # abbreviations do not count


def test_command_extraction_reads_continuations_and_branches():
    script = ("set -euo pipefail\nif [ -f \"$B\" ]; then\n  genaiops run evaluate --use-case x \\\n"
              "    --report-dir \"$(Build.ArtifactStagingDirectory)/r\" --baseline \"$B\" | tee log\nfi\n")
    [command] = ps.genaiops_commands(script)
    assert ps.command_argv(command) == ["run", "evaluate", "--use-case", "x", "--report-dir", "x/r",
                                        "--baseline", "x"]


# ----------------------------------------------------------------------------- branch model

def _steps_running(job, phrase):
    return [s for s in ps.job_steps(job) if phrase in (ps.step_script(s) or "")]


def test_triggers_follow_the_branch_model():
    raw = ps.load_yaml(ENTRY)
    assert raw["trigger"]["branches"]["include"] == ["development", "main", "release/*"]
    assert "development" in raw["pr"]["branches"]["include"]
    assert raw["lockBehavior"] == "sequential"


def _changed(use_case: str) -> str:
    return f"eq(dependencies.Checks.outputs['Changes.changes.{use_case}'], 'true')"


@pytest.mark.parametrize("use_case", USE_CASES)
def test_pr_validation_fails_on_a_gate_publishes_reports_and_needs_no_azure(use_case):
    stage = _stage(f"PR_{use_case}")
    assert "eq(variables['Build.Reason'], 'PullRequest')" in stage["condition"]
    assert _changed(use_case) in stage["condition"]
    job = _job(stage, "Validate")
    steps = ps.job_steps(job)
    [evaluate] = [s for s in steps if "genaiops run evaluate" in (ps.step_script(s) or "")]
    assert "--env pr" in ps.step_script(evaluate) and "--baseline" in ps.step_script(evaluate)
    assert evaluate.get("continueOnError", "false") == "false"  # the gate's exit code fails the PR
    assert "set -euo pipefail" in ps.step_script(evaluate)
    after = steps[steps.index(evaluate) + 1:]
    junit = [s for s in after if s.get("task") == "PublishTestResults@2"]
    report = [s for s in after if s.get("task") == "PublishPipelineArtifact@1"]
    assert junit and junit[0]["inputs"]["testResultsFiles"].endswith("junit.xml")
    assert junit[0]["condition"] == "succeededOrFailed()" and junit[0]["inputs"]["failTaskOnFailedTests"] == "true"
    assert report and report[0]["condition"] == "succeededOrFailed()"
    for phrase in ("genaiops validate", "genaiops run init", "genaiops run experiment", "find_baseline.py"):
        assert _steps_running(job, phrase), phrase
    assert "--deployed-env dev" in ps.step_script(_steps_running(job, "find_baseline.py")[0])
    assert {"group": "genaiops-pr"} in stage["variables"]
    assert not [s for s in steps if s.get("task") == "AzureCLI@2"], "PR validation uses no service connection"


@pytest.mark.parametrize("use_case", USE_CASES)
def test_pr_validation_posts_the_verdict_comment_even_after_a_failed_gate(use_case):
    steps = ps.job_steps(_job(_stage(f"PR_{use_case}"), "Validate"))
    [evaluate] = [s for s in steps if "genaiops run evaluate" in (ps.step_script(s) or "")]
    [comment] = [s for s in steps if "genaiops report comment" in (ps.step_script(s) or "")]
    assert steps.index(comment) > steps.index(evaluate)
    assert comment["condition"].startswith("and(succeededOrFailed(), ")
    assert "eq(variables['Build.Repository.Provider'], 'TfsGit')" in comment["condition"]
    script = ps.step_script(comment)
    assert f"--use-case {use_case} --env pr" in script and "--platform azure_devops" in script
    assert comment["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"


@pytest.mark.parametrize("baseline, candidate", PARITY)
def test_a_migration_pr_is_gated_on_parity_and_still_publishes_reports(baseline, candidate):
    stage = _stage(f"Parity_{candidate}")
    assert "eq(variables['Build.Reason'], 'PullRequest')" in stage["condition"]
    steps = ps.job_steps(_job(stage, "Compare"))
    [compare] = [s for s in steps if "genaiops compare" in (ps.step_script(s) or "")]
    script = ps.step_script(compare)
    assert f"--baseline {baseline} --candidate {candidate}" in script and "--env" not in script
    assert "set -euo pipefail" in script and compare.get("continueOnError", "false") == "false"
    after = steps[steps.index(compare) + 1:]
    [junit] = [s for s in after if s.get("task") == "PublishTestResults@2"]
    assert junit["inputs"]["testResultsFiles"].endswith("parity/junit.xml")
    assert junit["condition"] == "succeededOrFailed()" and junit["inputs"]["failTaskOnFailedTests"] == "true"
    assert any(s.get("task") == "PublishPipelineArtifact@1" and s["condition"] == "succeededOrFailed()"
               and s["inputs"]["artifact"] == f"parity-{candidate}-$(System.JobAttempt)" for s in after)


def test_checks_stage_lints_tests_and_finds_the_changed_use_cases():
    job = _job(_stage("Checks"), "Checks")
    assert _steps_running(job, "ruff check") and _steps_running(job, "python -m pytest --junitxml")
    # issue 21.9: the contract test runs here - docker and the base image first, and a skip is a failure
    [docker] = _steps_running(job, ".ci/setup-docker.sh")
    [pytest_step] = _steps_running(job, "python -m pytest")
    steps = ps.job_steps(job)
    assert steps.index(docker) < steps.index(pytest_step)
    assert pytest_step["env"]["GENAIOPS_REQUIRE_DOCKER"] == "1"
    assert pytest_step["env"]["GENAIOPS_BASE_IMAGE"] == docker["env"]["GENAIOPS_BASE_IMAGE"]
    assert any(s.get("task") == "PublishTestResults@2" and s["condition"] == "succeededOrFailed()"
               for s in ps.job_steps(job))
    assert _steps_running(job, "make setup")
    changes = _job(_stage("Checks"), "Changes")
    [step] = _steps_running(changes, "changed_use_cases.py")
    assert step["name"] == "changes" and "--use-cases \"classification,qa\"" in ps.step_script(step)
    assert {"checkout": "self", "fetchDepth": "0"} in ps.job_steps(changes)


@pytest.mark.parametrize("use_case", USE_CASES)
def test_dev_evaluates_builds_once_and_deploys_that_digest(use_case):
    stage = _stage(f"Dev_{use_case}")
    for branch in ("development", "main"):
        assert f"eq(variables['Build.SourceBranch'], 'refs/heads/{branch}')" in stage["condition"]
    assert "ne(variables['Build.Reason'], 'PullRequest')" in stage["condition"] and _changed(use_case) in stage[
        "condition"]
    assert {"group": "genaiops-dev"} in stage["variables"]
    build = _job(stage, "Build")
    assert "--deployed-env auto" in ps.step_script(_steps_running(build, "find_baseline.py")[0])
    # build releases only a summary it can verify against the evaluation kept on its own agent:
    # evaluate and build are one job, evaluate first, and build reads the summary evaluate wrote
    steps = [ps.step_script(step) or "" for step in ps.job_steps(build)]
    [evaluated] = [i for i, text in enumerate(steps) if "genaiops run evaluate" in text]
    [built] = [i for i, text in enumerate(steps) if "genaiops run build" in text]
    assert evaluated < built
    report = '--report-dir "$(Build.ArtifactStagingDirectory)/report"'
    assert report in steps[evaluated] and '--summary "$(Build.ArtifactStagingDirectory)/report/summary.json"' \
        in steps[built]
    [release] = _steps_running(build, "genaiops run build")
    script = ps.step_script(release)
    assert release["name"] == "release" and release["task"] == "AzureCLI@2"
    assert release["inputs"]["azureSubscription"] == "genaiops-azure-dev"
    assert script.index('az acr login --name "$GENAIOPS_IMAGE_REGISTRY"') < script.index("genaiops run build")
    assert "release_outputs.py" in script
    deploying = _stage(f"DeployDev_{use_case}")
    assert deploying["dependsOn"] == f"Dev_{use_case}" and deploying["lockBehavior"] == "sequential"
    deploy = _job(deploying, "Deploy")
    assert deploy["environment"] == "dev" and {"download": "none"} in ps.job_steps(deploy)
    assert {"checkout": "self"} in ps.job_steps(deploy)
    [step] = _steps_running(deploy, "genaiops run deploy")
    assert "--env dev" in ps.step_script(step) and "--evidence" in ps.step_script(step)
    assert "--target" not in ps.step_script(step)  # the environment's own target
    assert not _steps_running(deploy, "genaiops run build")  # nothing is built in a deploy job
    assert deploy["variables"]["evidenceArtifact"] == \
        f"$[ stageDependencies.Dev_{use_case}.Build.outputs['release.artifact'] ]"


def test_an_environment_is_used_only_by_stages_that_deploy():
    """Issue 21.5: Azure DevOps evaluates an environment's checks (its Exclusive lock) for the whole
    stage that uses it: a stage holding `prod` through an approval wait blocked every other release."""
    for stage in PIPELINE["stages"]:
        jobs = stage["jobs"]
        if any("environment" in j for j in jobs):
            assert all("deployment" in j for j in jobs), stage["stage"]
            assert not any(s.get("task", "").startswith("ManualValidation") for j in jobs for s in ps.job_steps(j))
            assert stage["lockBehavior"] == "sequential"


@pytest.mark.parametrize("use_case", USE_CASES)
def test_prod_deploys_only_the_digest_its_own_approval_record_names(use_case):
    approving, stage = _stage(f"Approve_{use_case}"), _stage(f"Prod_{use_case}")
    for s in (approving, stage):
        assert s["condition"].startswith("and(succeeded(),")
        assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in s["condition"]
        assert "ne(variables['Build.Reason'], 'PullRequest')" in s["condition"]
        assert {"group": "genaiops-prod"} in s["variables"]
    assert approving["dependsOn"] == [f"Dev_{use_case}", f"DeployDev_{use_case}"]
    assert stage["dependsOn"] == [f"Dev_{use_case}", f"Approve_{use_case}"] and stage["lockBehavior"] == "sequential"
    approve, deploy = _job(approving, "Approve"), _job(stage, "Deploy")

    assert approve["pool"] == "server"
    [task] = approve["steps"]
    assert task["task"] == "ManualValidation@1"
    assert task["displayName"] == "Approve image $(imageDigest)"  # recorded in the timeline with the approval
    inputs = task["inputs"]
    assert inputs["allowApproversToApproveTheirOwnRuns"] == "false"
    assert re.fullmatch(r"\$\(\w+\)", inputs["approvers"]) and inputs["approvers"] == inputs["notifyUsers"]
    assert inputs["onTimeout"] == "reject"
    assert int(task["timeoutInMinutes"]) == 60 < int(approve["timeoutInMinutes"]) <= 90  # issue 21.6
    source = f"$[ stageDependencies.Dev_{use_case}.Build.outputs['release.digest'] ]"
    assert approve["variables"]["imageDigest"] == source and "$(imageDigest)" in inputs["instructions"]
    assert approve["variables"]["releaseText"].endswith("outputs['release.text'] ]")
    assert "$(releaseText)" in inputs["instructions"]

    assert deploy["environment"] == "prod" and "dependsOn" not in deploy
    [step] = _steps_running(deploy, "genaiops run deploy")
    assert "--env prod" in ps.step_script(step) and "--evidence" in ps.step_script(step)
    assert step["inputs"]["azureSubscription"] == "genaiops-azure-prod"  # prod-only service connection
    assert step["env"]["GENAIOPS_APPROVAL_SOURCE"] == "azure_devops"
    assert step["env"]["GENAIOPS_APPROVAL_STAGE"] == f"Approve_{use_case}"
    assert step["env"]["GENAIOPS_RELEASE_APPROVERS"] == inputs["approvers"]
    assert "GENAIOPS_APPROVED_DIGEST" not in step["env"]  # the digest comes from the approval record
    assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
    assert {"download": "none"} in ps.job_steps(deploy)


def test_dev_and_prod_use_different_service_connections():
    connections = {(stage["stage"].split("_")[0], step["inputs"]["azureSubscription"])
                   for stage, job in ps.iter_jobs(PIPELINE) for step in ps.job_steps(job)
                   if step.get("task") == "AzureCLI@2"}
    assert {c for s, c in connections if s == "Prod"} == {"genaiops-azure-prod"}
    assert {c for s, c in connections if s != "Prod"} == {"genaiops-azure-dev"}


def test_manual_validation_only_in_agentless_jobs():
    for stage, job in ps.iter_jobs(PIPELINE):
        tasks = [s.get("task", "") for s in ps.job_steps(job)]
        if any(t.startswith("ManualValidation@") for t in tasks):
            assert job.get("pool") == "server", f"{stage['stage']}/{job.get('job')}"
            assert "ManualValidation@0" not in tasks, "v0 lets anyone with queue permission approve"
        if job.get("pool") == "server":
            assert all(s.get("task") for s in job["steps"]), "agentless jobs run tasks only"


def _all_steps():
    return [(stage, job, step) for stage, job in ps.iter_jobs(PIPELINE) for step in ps.job_steps(job)]


def test_reruns_sessions_caches_and_baselines_cannot_break_a_run():
    steps = _all_steps()
    names = [s["inputs"]["artifact"] for _, _, s in steps if s.get("task") == "PublishPipelineArtifact@1"]
    assert names and all("$(System.JobAttempt)" in n or re.fullmatch(r"\$\(\w+\.artifact\)", n) for n in names)
    azure = [s for _, _, s in steps if s.get("task") == "AzureCLI@2"]
    assert azure and all(s["inputs"].get("keepAzSessionActive") == "true" for s in azure)
    assert all(s.get("continueOnError", "false") == "false" for _, _, s in steps)
    downloads = [s for _, _, s in steps if s.get("task") == "DownloadPipelineArtifact@2"]
    assert not [s for s in downloads if "allowPartiallySucceededBuilds" in s["inputs"] or
                s["inputs"].get("buildVersionToDownload") == "latest"]
    for stage, job in ps.iter_jobs(PIPELINE):
        if "deployment" in job:
            assert {"download": "none"} in ps.job_steps(job), f"{stage['stage']}/{job['deployment']}"
        if _steps_running(job, "make setup"):
            assert any(s.get("task") == "Cache@2" and "pyproject.toml" in s["inputs"]["key"]
                       for s in ps.job_steps(job))


@pytest.mark.parametrize("use_case", USE_CASES)
def test_deploy_records_and_audit_logs_are_published_whatever_happened(use_case):
    for stage, env in ((f"DeployDev_{use_case}", "dev"), (f"Prod_{use_case}", "prod")):
        steps = ps.job_steps(_job(_stage(stage), "Deploy"))
        [collect] = [s for s in steps if '$(stateDir)/audit' in (ps.step_script(s) or "")]
        [publish] = [s for s in steps if s.get("task") == "PublishPipelineArtifact@1"]
        assert collect["condition"] == publish["condition"] == "succeededOrFailed()"
        assert publish["inputs"]["artifact"] == f"deploy-{env}-{use_case}-$(System.JobAttempt)"
        [tag] = [s for s in steps if "addbuildtag" in (ps.step_script(s) or "")]
        assert f"deployed-{env}-{use_case}" in ps.step_script(tag) and "condition" not in tag  # only on success


# ----------------------------------------------------------------------------- variables

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
REQUIRED_AZURE = {"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "GENAIOPS_IMAGE_REGISTRY"}
PREDEFINED = re.compile(r"^(Build|System|Agent|Pipeline|Common|Environment)\.")


def _config_references() -> list[tuple[str, str, bool]]:
    """(file, variable, has a default) for every ${env:...} in configs/."""
    found = []
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        for match in ENV_REF.finditer(path.read_text()):
            found.append((str(path.relative_to(REPO)), match.group(1), match.group(2) is not None))
    return found


def test_every_variable_a_config_reads_is_documented_or_set_by_the_pipeline():
    documented = documented_variables()
    set_by_steps = {name for _, _, step in _all_steps() for name in (step.get("env") or {})}
    example = (REPO / ".env.example").read_text()
    references = _config_references()
    assert references
    for file, name, _ in references:
        assert name in documented or name in set_by_steps, f"{file}: ${{env:{name}}} is in no variable group"
        assert re.search(rf"^{name}=", example, re.MULTILINE), f"{name} is missing from .env.example"
    for file, name, has_default in references:
        if name in REQUIRED_AZURE:
            assert not has_default, f"{file}: {name} has a default that hides its absence"
            assert not documented[name].optional and documented[name].groups >= {"dev", "prod"}


def test_every_macro_a_stage_uses_comes_from_its_variables():
    documented = documented_variables()
    pipeline_vars = {v["name"] for v in PIPELINE["variables"]}
    for stage in PIPELINE["stages"]:
        groups = {v["group"].removeprefix("genaiops-") for v in stage.get("variables", []) if "group" in v}
        for job in stage["jobs"]:
            defined = pipeline_vars | set(job.get("variables") or {})
            steps = {s["name"] for s in ps.job_steps(job) if s.get("name")}  # their output variables
            for name in set(re.findall(r"\$\((\w[\w.]*)\)", repr(job))):
                if PREDEFINED.match(name) or name in defined or name.split(".")[0] in steps or \
                        name.startswith("baseline"):  # set by find_baseline.py
                    continue
                assert name in documented and groups & documented[name].groups, \
                    f"{stage['stage']}/{job.get('job', job.get('deployment'))}: $({name}) comes from no variable"


# ----------------------------------------------------------------------------- secrets

SECRET_NAME = re.compile(r"(?i)(key|secret|token|password|pwd|connectionstring|sas)")
MACRO = re.compile(r"\$\(([\w.]+)\)")
LEAKY_SHELL = [
    (re.compile(r"(^|[;&|]\s*)(printenv|env|export -p|declare -p|set)\s*($|[;&|>])", re.MULTILINE), "dumps the environment"),
    (re.compile(r"set\s+-[a-wyz]*x"), "set -x traces expanded commands"),
    (re.compile(r"(?i)\$\{?\w*(key|secret|token|password)\w*\}?"), "reads a secret in a script"),
]


def secret_leaks(pipeline: dict) -> list[str]:
    """Secret-looking variables may appear only as values of a step's `env:` mapping; scripts never
    print the environment, trace commands or touch a secret; no service principal secret in env."""
    problems = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, dict) and isinstance(node.get("task") or node.get("script")
                                                                           or node.get("bash"), str):
                    continue  # a step's env mapping: the one allowed place
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}/{index}")
        elif isinstance(node, str):
            for name in MACRO.findall(node):
                if SECRET_NAME.search(name):
                    problems.append(f"{path}: $({name}) outside a step's env mapping")

    walk(pipeline, "")
    for stage, job in ps.iter_jobs(pipeline):
        for step in ps.job_steps(job):
            where = f"{stage['stage']}/{job.get('job', job.get('deployment'))}/{step.get('displayName')}"
            script = ps.step_script(step) or ""
            for pattern, why in LEAKY_SHELL:
                if pattern.search(script):
                    problems.append(f"{where}: {why}")
            inputs = step.get("inputs") or {}
            if str(inputs.get("addSpnToEnvironment", "false")).lower() == "true":
                problems.append(f"{where}: addSpnToEnvironment exposes the service principal secret")
            for name, value in (step.get("env") or {}).items():
                if SECRET_NAME.search(name) and not MACRO.fullmatch(str(value)):
                    problems.append(f"{where}: env {name} is not a variable reference")
    return problems


def test_no_step_can_leak_a_secret():
    assert secret_leaks(PIPELINE) == []
    mapped = {name: value for _, job in ps.iter_jobs(PIPELINE) for step in ps.job_steps(job)
              for name, value in (step.get("env") or {}).items()}
    assert mapped["LLM_API_KEY"] == "$(LLM_API_KEY)"
    assert mapped["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"


def test_raw_yaml_never_puts_the_access_token_on_a_command_line():
    for path in PIPELINE_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "System.AccessToken" in line or "SYSTEM_ACCESSTOKEN" in line:
                assert re.fullmatch(r"\s*SYSTEM_ACCESSTOKEN: \$\(System\.AccessToken\)", line) or \
                    line.lstrip().startswith("#"), f"{path.name}:{number}: {line.strip()}"
            assert not re.search(r"\b(printenv|set -x)\b", line) or line.lstrip().startswith("#"), \
                f"{path.name}:{number}"
    # scripts: only ado_rest.py reads the token, into the Authorization header and nowhere else
    for path in sorted((REPO / "pipelines").rglob("*.py")):
        code = [line for line in path.read_text().splitlines() if "environ" in line and "SYSTEM_ACCESSTOKEN" in line
                and "missing" not in line]
        if path.name == "ado_rest.py":
            assert len(code) == 1 and '"Authorization": f"Bearer {os.environ[\'SYSTEM_ACCESSTOKEN\']}"' in code[0]
        else:
            assert code == [], path.name


@pytest.mark.parametrize("bad_step", [
    {"script": "echo $(LLM_API_KEY)", "displayName": "echo"},
    {"script": "genaiops run deploy --use-case x --token $(System.AccessToken)"},
    {"script": "printenv | sort"},
    {"script": "set -euxo pipefail\ngenaiops validate"},
    {"script": "env"},
    {"script": "echo \"$LLM_API_KEY\" > key.txt", "env": {"LLM_API_KEY": "$(LLM_API_KEY)"}},
    {"script": "genaiops validate", "env": {"LLM_API_KEY": "sk-plain-text"}},
    {"task": "AzureCLI@2", "inputs": {"azureSubscription": "c", "scriptType": "bash",
                                      "addSpnToEnvironment": "true", "inlineScript": "genaiops validate"}},
    {"task": "AzureCLI@2", "inputs": {"azureSubscription": "c", "scriptType": "bash",
                                      "arguments": "$(LLM_API_KEY)", "inlineScript": "genaiops validate"}},
])
def test_secret_check_catches_leaks(bad_step):
    pipeline = copy.deepcopy(PIPELINE)
    _job(_stage("Checks"), "Checks")  # exists
    pipeline["stages"][0]["jobs"][0]["steps"].append(bad_step)
    assert secret_leaks(pipeline)
