"""Azure DevOps pipelines: schema-valid, commands the real CLI accepts, approval before prod, no
secret in any log or command line.

The schema is `../shared/schemas/azure-pipelines.schema.json` beside the repository (CI clones the
repository with `shared/` next to it); without it the schema tests are skipped with that reason.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pipeline_schema as ps
import pytest

from genaiops.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "azure-pipelines.yml"
PIPELINE_FILES = [ENTRY, *sorted((REPO / "pipelines").rglob("*.yml"))]
USE_CASES = ["classification", "qa"]  # the default `useCases` of azure-pipelines.yml
PARITY = [("classification", "classification_maf")]  # the default `parityChecks`

EXPANDED = ps.expand_pipeline(ENTRY)
PIPELINE = EXPANDED.pipeline


@pytest.fixture(scope="module")
def schema_file(repo_root) -> Path:
    path = ps.schema_path(repo_root)
    if not path.is_file():
        pytest.skip(f"Azure Pipelines schema not found at {path} (expected shared/ beside the repo)")
    return path


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
def test_each_pipeline_file_validates_against_the_schema(path, schema_file):
    assert ps.validate_file(path, schema_file) == []


def test_expanded_pipeline_validates_and_uses_every_template(schema_file):
    assert "${{" not in repr(PIPELINE), "a compile-time expression survived expansion"
    assert ps.schema_errors(PIPELINE, schema_file) == []
    templates = {p.resolve() for p in PIPELINE_FILES if p != ENTRY}
    assert EXPANDED.files == templates, "a template is unused or missing"
    assert [s["stage"] for s in PIPELINE["stages"]] == [
        "Checks", "PR_classification", "PR_qa", "Parity_classification_maf", "Dev_classification",
        "Dev_qa", "ProdGate_classification", "Prod_classification", "ProdGate_qa", "Prod_qa"]


def _first_azure_cli_step(pipeline):
    for _, job in ps.iter_jobs(pipeline):
        for step in ps.job_steps(job):
            if step.get("task") == "AzureCLI@2":
                return step
    raise AssertionError("no AzureCLI@2 step")


def _approval_step(pipeline):
    return _job(next(s for s in pipeline["stages"] if s["stage"].startswith("Prod_")), "Approve")["steps"][0]


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
def test_schema_check_fails_on_broken_pipeline(breakage, schema_file):
    broken = copy.deepcopy(PIPELINE)
    BREAKAGES[breakage](broken)
    assert ps.schema_errors(broken, schema_file), f"{breakage} passed the schema check"


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    shutil.copy(ENTRY, tmp_path / ENTRY.name)
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_broken_template_file_fails_both_checks(repo_copy, schema_file):
    template = repo_copy / "pipelines/templates/checks.yml"
    _edit(template, "    displayName: Lint (ruff)\n", "    displayName: Lint (ruff)\n    retries: 3\n")
    assert ps.validate_file(template, schema_file)
    assert ps.schema_errors(ps.expand_pipeline(repo_copy / ENTRY.name).pipeline, schema_file)


@pytest.mark.parametrize("old,new,message", [
    ("      useCase: ${{ useCase }}\n                  env: pr\n",
     "      useCase: ${{ useCase }}\n                  environment: pr\n", "unexpected parameter"),
    ("                  env: dev\n                  serviceConnection", "                  serviceConnection",
     "required parameter 'env'"),
    ("--env ${{ parameters.env }}", "--env ${{ parameters.environment }}", "undefined reference"),
    ("target: ${{ parameters.deployTarget }}", "target: docker-compose", "not in"),
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
    assert {"PR_support_bot", "Dev_support_bot", "ProdGate_support_bot", "Prod_support_bot"} <= set(stages)


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
    assert {("validate",), ("run", "init"), ("run", "experiment"), ("run", "evaluate"),
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


# ----------------------------------------------------------------------------- PR validation, CI dev

def _steps_running(job, phrase):
    return [s for s in ps.job_steps(job) if phrase in (ps.step_script(s) or "")]


@pytest.mark.parametrize("use_case", USE_CASES)
def test_pr_validation_fails_on_a_gate_and_still_publishes_reports(use_case):
    stage = _stage(f"PR_{use_case}")
    assert "eq(variables['Build.Reason'], 'PullRequest')" in stage["condition"]
    job = _job(stage, "Validate")
    steps = ps.job_steps(job)
    [evaluate] = [s for s in steps if "genaiops run evaluate" in (ps.step_script(s) or "")]
    assert "--env pr" in ps.step_script(evaluate)
    assert evaluate.get("continueOnError", "false") == "false"  # the gate's exit code fails the PR
    assert "set -euo pipefail" in ps.step_script(evaluate)
    after = steps[steps.index(evaluate) + 1:]
    junit = [s for s in after if s.get("task") == "PublishTestResults@2"]
    report = [s for s in after if s.get("task") == "PublishPipelineArtifact@1"
              and s["inputs"]["artifact"] == f"report-pr-{use_case}"]
    assert junit and junit[0]["inputs"]["testResultsFiles"].endswith("junit.xml")
    assert junit[0]["condition"] == "succeededOrFailed()" and junit[0]["inputs"]["failTaskOnFailedTests"] == "true"
    assert report and report[0]["condition"] == "succeededOrFailed()"
    for phrase in ("genaiops validate", "genaiops run init", "genaiops run experiment"):
        assert _steps_running(job, phrase), phrase
    assert {"group": "genaiops-pr"} in stage["variables"]


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
               and s["inputs"]["artifact"] == f"parity-{candidate}" for s in after)


def test_checks_stage_lints_tests_and_publishes_results():
    job = _job(_stage("Checks"), "Checks")
    assert _steps_running(job, "ruff check") and _steps_running(job, "python -m pytest --junitxml")
    assert any(s.get("task") == "PublishTestResults@2" and s["condition"] == "succeededOrFailed()"
               for s in ps.job_steps(job))
    assert _steps_running(job, "make setup")


@pytest.mark.parametrize("use_case", USE_CASES)
def test_ci_deploys_to_dev_after_evaluation(use_case):
    stage = _stage(f"Dev_{use_case}")
    assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in stage["condition"]
    assert "ne(variables['Build.Reason'], 'PullRequest')" in stage["condition"]
    deploy = _job(stage, "Deploy")
    assert deploy["environment"] == "dev" and _as_list(deploy["dependsOn"]) == ["Evaluate"]
    [step] = _steps_running(deploy, "genaiops run deploy")
    assert "--env dev" in ps.step_script(step)
    assert _steps_running(_job(stage, "Evaluate"), "genaiops run evaluate")


# ----------------------------------------------------------------------------- release to prod

@pytest.mark.parametrize("use_case", USE_CASES)
def test_prod_deploy_cannot_run_without_manual_validation(use_case):
    stage = _stage(f"Prod_{use_case}")
    approve, deploy = _job(stage, "Approve"), _job(stage, "Deploy")

    assert approve["pool"] == "server"
    [task] = approve["steps"]
    assert task["task"] == "ManualValidation@0"
    assert int(task["timeoutInMinutes"]) == 60
    assert int(approve["timeoutInMinutes"]) > int(task["timeoutInMinutes"])
    assert task["inputs"]["onTimeout"] == "reject"
    assert re.fullmatch(r"\$\(\w+\)", task["inputs"]["notifyUsers"]), "notifyUsers comes from a variable"

    assert "deployment" in deploy and deploy["environment"] == "prod"
    assert "Approve" in _as_list(deploy["dependsOn"])
    condition = deploy["condition"]
    assert "eq(dependencies.Approve.result, 'Succeeded')" in condition
    assert condition.startswith("and(") and not re.search(r"always\(|failed\(|succeededOrFailed|or\(", condition)
    [step] = _steps_running(deploy, "genaiops run deploy")
    assert "--env prod" in ps.step_script(step)
    assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"

    # stage chain: dev -> prod candidate evaluation -> approval + deploy, never on a PR
    gate = _stage(f"ProdGate_{use_case}")
    assert _as_list(stage["dependsOn"]) == [gate["stage"]]
    assert _as_list(gate["dependsOn"]) == [f"Dev_{use_case}"]
    for s in (stage, gate):
        assert s["condition"].startswith("and(succeeded(),")
        assert "ne(variables['Build.Reason'], 'PullRequest')" in s["condition"]


@pytest.mark.parametrize("use_case", USE_CASES)
def test_approver_sees_the_evaluation_summary_not_a_run_id(use_case):
    approve = _job(_stage(f"Prod_{use_case}"), "Approve")
    assert "$(evaluationSummary)" in approve["steps"][0]["inputs"]["instructions"]
    source = approve["variables"]["evaluationSummary"]
    match = re.fullmatch(r"\$\[ stageDependencies\.(\w+)\.(\w+)\.outputs\['(\w+)\.(\w+)'\] \]", source)
    assert match, source
    stage_name, job_name, step_name, variable = match.groups()
    producer = _job(_stage(stage_name), job_name)
    [step] = [s for s in ps.job_steps(producer) if s.get("name") == step_name]
    script = ps.step_script(step)
    assert "approval_summary.py" in script and "summary.md" in script and "--variable" not in script
    assert variable == "text"  # approval_summary.py's default output variable
    [evaluate] = _steps_running(producer, "genaiops run evaluate --use-case")[:1]
    assert "--env prod" in ps.step_script(evaluate) and "--baseline" in ps.step_script(evaluate)


def test_manual_validation_only_in_agentless_jobs():
    for stage, job in ps.iter_jobs(PIPELINE):
        tasks = [s.get("task") for s in ps.job_steps(job)]
        if "ManualValidation@0" in tasks:
            assert job.get("pool") == "server", f"{stage['stage']}/{job.get('job')}"
        if job.get("pool") == "server":
            assert all(s.get("task") for s in job["steps"]), "agentless jobs run tasks only"


def test_approval_summary_script(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("# Evaluation classification (prod)\n\n| metric | value | delta vs deployed |\n"
                       "|---|---:|---:|\n| accuracy | 0.91 | +0.03 |\n\nGates: 1 passed ##vso[task.complete]\n")
    script = REPO / "pipelines/scripts/approval_summary.py"
    env = {"SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/", "SYSTEM_TEAMPROJECT": "proj",
           "BUILD_BUILDID": "42", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(script), "--summary", str(summary), "--artifact", "report-prod-x"],
                          capture_output=True, text=True, env=env, check=True)
    [line] = done.stdout.splitlines()
    assert line.startswith("##vso[task.setvariable variable=text;isOutput=true]Evaluation classification")
    assert "accuracy | 0.91 | +0.03" in line and "Gates: 1 passed" in line
    assert "##vso[task.complete]" not in line.split("]", 1)[1]
    assert "https://dev.azure.com/org/proj/_build/results?buildId=42" in line
    missing = subprocess.run([sys.executable, str(script), "--summary", str(tmp_path / "none.md"),
                              "--artifact", "a"], capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "setvariable" not in missing.stdout


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
    for path in [*PIPELINE_FILES, *sorted((REPO / "pipelines").rglob("*.py"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "System.AccessToken" in line or "SYSTEM_ACCESSTOKEN" in line:
                assert re.fullmatch(r"\s*SYSTEM_ACCESSTOKEN: \$\(System\.AccessToken\)", line) or \
                    line.lstrip().startswith("#"), f"{path.name}:{number}: {line.strip()}"
            assert not re.search(r"\b(printenv|set -x)\b", line) or line.lstrip().startswith("#"), \
                f"{path.name}:{number}"


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
