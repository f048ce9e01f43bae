"""GitHub Actions, emulated: run a workflow of `.github/workflows/` for one event the way GitHub and
its runner would, executing every `run:` step for real (bash, `-eo pipefail`) in a fresh checkout.

What is emulated as GitHub does it (and what the tests therefore check):
- jobs in `needs` order, `if:` conditions, `strategy.matrix` (lists and `include`), job `outputs`;
  reusable workflows (`uses: ./.github/workflows/x.yml` with `with:` inputs and their defaults,
  `secrets: inherit`, `on.workflow_call.outputs`) and the local composite action
  (`uses: ./.github/actions/...`, its `inputs`);
- expressions `${{ }}` over the contexts github, env, vars, secrets, inputs, matrix, needs, steps,
  runner, jobs with ==, !=, &&, ||, !, and fromJSON, format, hashFiles, contains, startsWith,
  success/failure/cancelled/always; a missing property is null, as on GitHub;
- per job: a fresh runner (RUNNER_TEMP, HOME, RUNNER_NAME), the GITHUB_* variables, GITHUB_OUTPUT /
  GITHUB_ENV / GITHUB_PATH / GITHUB_STEP_SUMMARY files, and a GITHUB_TOKEN issued by the GitHub fake
  with exactly the job's `permissions:` (so a missing permission fails like on GitHub);
- the job is registered in the GitHub fake (its run, jobs, runner name, start time), which is what
  genaiops reads back.

Actions that are not the repository's own run as small documented fakes (`ACTIONS` below):
actions/checkout (a clone of the commit), actions/setup-python (the Python of the venv `make setup`
built), actions/upload-artifact / download-artifact (a folder per run). An unknown action fails
the step; azure/login signs in the `az` fake only for a federated credential whose subject is the
job's environment. Environments apply their deployment branches and required review (a hook plays
the reviewer, who reads the job summaries; prevent self-review) before the job starts, and give the
job their variables and secrets. Not emulated: caching, services, concurrency groups, re-runs.
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml
from fakes.github import OWNER, REPO, FakeGitHub

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
CONTEXTS = ("github", "env", "vars", "secrets", "inputs", "matrix", "needs", "steps", "runner", "jobs",
            "strategy", "job")
AGENT_FRAMEWORK_REQUIREMENTS = "src/genaiops/engines/agent_framework/runtime/requirements.txt"


class StepFailed(Exception):
    pass


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads `on` as a boolean
        data["on"] = data.pop(True)
    return data


# -- expressions ------------------------------------------------------------------------------------

def _lookup(context: dict, path: str):
    value = context
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def evaluate(expression: str, context: dict, status: str = "success"):
    literals: list[str] = []

    def literal(match):
        literals.append(match.group(1).replace("''", "'"))
        return f"_l{len(literals) - 1}"

    text = re.sub(r"'((?:[^']|'')*)'", literal, expression.strip())
    values: dict = {}

    def reference(match):
        path = match.group(0)
        if path.split(".")[0] not in CONTEXTS:
            return path
        values[f"_v{len(values)}"] = _lookup(context, path)
        return f"_v{len(values) - 1}"

    text = re.sub(r"(?<![\w.])[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*", reference, text)
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", text)))
    workspace = Path(str(context.get("github", {}).get("workspace") or "."))

    def hash_files(*patterns):
        for pattern in patterns:
            base = Path(pattern) if Path(pattern).is_absolute() else workspace / pattern
            if base.is_file():
                return "h" * 64
            if any(Path(p).is_file() for p in map(str, base.parent.glob(base.name))):
                return "h" * 64
        return ""

    functions = {
        "fromJSON": json.loads, "toJSON": json.dumps, "contains": lambda a, b: b in (a or ""),
        "startsWith": lambda a, b: str(a or "").lower().startswith(str(b).lower()),
        "format": lambda f, *args: re.sub(r"\{(\d+)\}", lambda m: _text(args[int(m.group(1))]), f),
        "hashFiles": hash_files, "success": lambda: status == "success", "failure": lambda: status == "failure",
        "cancelled": lambda: False, "always": lambda: True,
    }
    namespace = {**functions, **values, **{f"_l{i}": s for i, s in enumerate(literals)}}
    return eval(text, {"__builtins__": {}}, namespace)  # noqa: S307 - our own workflow files, test only


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def interpolate(value, context: dict):
    """`${{ }}` in strings (recursively in mappings and lists); a string that is one expression keeps
    its value's type, as GitHub does for `with:` and `matrix`."""
    if isinstance(value, dict):
        return {k: interpolate(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, context) for v in value]
    if not isinstance(value, str):
        return value
    whole = EXPRESSION.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), context)
    return EXPRESSION.sub(lambda m: _text(evaluate(m.group(1), context)), value)


def condition(expression, context: dict, status: str) -> bool:
    if expression is None:
        return status == "success"
    text = str(expression).strip()
    text = EXPRESSION.fullmatch(text).group(1) if EXPRESSION.fullmatch(text) else text
    if not re.search(r"\b(success|failure|cancelled|always)\(\)", text):
        text = f"success() && ({text})"
    return bool(evaluate(text, context, status))


# -- a run ---------------------------------------------------------------------------------------------

@dataclass
class Event:
    name: str  # pull_request | push
    sha: str  # what the checkout gets (a PR: the merge commit)
    ref: str  # refs/pull/N/merge | refs/heads/<branch>
    payload: dict
    actor: str = "dana-dev"
    base_ref: str = ""
    head_ref: str = ""


@dataclass
class StepLog:
    job: str
    step: str
    result: str  # success | failure | skipped
    output: str
    seconds: float = 0.0


@dataclass
class Result:
    run_id: int
    jobs: dict[str, str] = field(default_factory=dict)  # job name -> success | failure | skipped
    logs: list[StepLog] = field(default_factory=list)
    summaries: dict[str, str] = field(default_factory=dict)  # job name -> GITHUB_STEP_SUMMARY
    artifacts: dict[str, Path] = field(default_factory=dict)
    tokens: dict[str, dict] = field(default_factory=dict)  # job name -> permissions its token had

    def output(self, job: str | None = None) -> str:
        return "\n".join(f"--- {log.job}/{log.step}: {log.result}\n{log.output}" for log in self.logs
                         if job in (None, log.job))

    def timings(self) -> str:
        return "\n".join(f"{log.seconds:7.1f}s  {log.job}/{log.step}" for log in self.logs if log.seconds >= 1)

    def failures(self) -> str:
        return "\n".join(f"--- {log.job}/{log.step}\n{log.output[-6000:]}" for log in self.logs
                         if log.result == "failure")


@dataclass
class Runner:
    origin: Path  # the repository (git) the checkout clones
    github: FakeGitHub
    variables: dict[str, str]  # `vars`
    secrets: dict[str, str]
    machine_env: dict[str, str]
    venv: Path  # the virtual environment `make setup` built (linked into each checkout)
    workdir: Path
    skip_steps: dict[str, str] = field(default_factory=dict)  # step name -> why it is not executed
    # GitHub environments: name -> {"vars", "secrets", "branches" (deployment branches),
    # "prevent_self_review", "review": callable(runner, job name) -> (login, comment) or None}
    environments: dict[str, dict] = field(default_factory=dict)
    federated: dict[str, dict] = field(default_factory=dict)  # OIDC subject -> the az sign-in it gets

    def __post_init__(self):
        self._runners = itertools.count(2)

    def run(self, workflow: Path, event: Event) -> Result:
        document = load_workflow(workflow)
        run = self.github.new_run(event.sha, event.head_ref or event.ref.rsplit("/", 1)[-1], event.name,
                                  actor=event.actor)
        self.result, self.event, self.run_record = Result(run.id), event, run
        self.event_path = self.workdir / f"event-{run.id}.json"
        self.event_path.parent.mkdir(parents=True, exist_ok=True)
        self.event_path.write_text(json.dumps(event.payload))
        self._workflow(document, inputs={}, env={}, prefix="", permissions=document.get("permissions"))
        run.status, run.conclusion = "completed", "failure" if "failure" in self.result.jobs.values() else "success"
        return self.result

    def _github_context(self, workspace: Path | None = None, token: str = "") -> dict:
        event = self.event
        return {"event_name": event.name, "event": event.payload, "sha": event.sha, "ref": event.ref,
                "repository": f"{OWNER}/{REPO}", "run_id": str(self.run_record.id), "run_attempt": "1",
                "actor": event.actor, "triggering_actor": event.actor, "token": token,
                "base_ref": event.base_ref, "head_ref": event.head_ref,
                "workspace": str(workspace or ""), "api_url": self.github.api_url,
                "server_url": "https://github.com"}

    def _workflow(self, document: dict, inputs: dict, env: dict, prefix: str, permissions) -> dict:
        """Run a workflow's jobs; returns {job id: {"result", "outputs"}}."""
        jobs = document["jobs"]
        permissions = document.get("permissions", permissions)  # a called workflow may only narrow them
        done: dict[str, dict] = {}
        env = {**env, **(document.get("env") or {})}
        pending = list(jobs)
        while pending:
            job_id = next(j for j in pending if all(n in done for n in _list(jobs[j].get("needs"))))
            pending.remove(job_id)
            job = jobs[job_id]
            needs = {n: done[n] for n in _list(job.get("needs"))}
            context = {"github": self._github_context(), "inputs": inputs, "vars": self.variables,
                       "secrets": self.secrets, "needs": needs, "env": env}
            status = "success" if all(n["result"] == "success" for n in needs.values()) else "failure"
            if not condition(job.get("if"), context, status):
                done[job_id] = {"result": "skipped", "outputs": {}}
                self.result.jobs[prefix + job_id] = "skipped"
                continue
            legs = self._matrix(job, context)
            results, outputs = [], {}
            for matrix in legs:
                leg_context = {**context, "matrix": matrix}
                name = prefix + job_id + (f" ({', '.join(map(_text, matrix.values()))})" if matrix else "")
                job_permissions = job.get("permissions", permissions)
                if "uses" in job:
                    called = load_workflow(self._repo_file(job["uses"]))
                    declared = (called["on"].get("workflow_call") or {}).get("inputs") or {}
                    given = interpolate(job.get("with") or {}, leg_context)
                    call_inputs = {k: given.get(k, spec.get("default")) for k, spec in declared.items()}
                    inner = self._workflow(called, call_inputs, {}, f"{name} / ", job_permissions)
                    result = "failure" if any(j["result"] == "failure" for j in inner.values()) else "success"
                    declared_outputs = (called["on"].get("workflow_call") or {}).get("outputs") or {}
                    outputs = {k: interpolate(v["value"], {"jobs": inner}) for k, v in declared_outputs.items()}
                else:
                    result, outputs = self._job(name, job, leg_context, env, job_permissions)
                self.result.jobs[name] = result
                results.append(result)
            done[job_id] = {"result": "failure" if "failure" in results else "success", "outputs": outputs}
        return done

    def _matrix(self, job: dict, context: dict) -> list[dict]:
        matrix = interpolate((job.get("strategy") or {}).get("matrix"), context)
        if not matrix:
            return [{}]
        include = matrix.pop("include", [])
        legs = [{}]
        for key, values in matrix.items():
            legs = [{**leg, key: v} for leg in legs for v in values]
        legs = [leg for leg in legs if leg] + list(include)
        return legs or [{}]

    def _repo_file(self, uses: str) -> Path:
        return self.checkout_root / uses.removeprefix("./")

    @property
    def checkout_root(self) -> Path:
        root = self.workdir / f"source-{self.run_record.id}"  # the workflow files of this run's commit
        if not root.exists():
            subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(self.origin), str(root)], check=True)
            subprocess.run(["git", "-C", str(root), "checkout", "--quiet", self.event.sha], check=True)
        return root

    # -- a job ------------------------------------------------------------------------------------------
    def _enter_environment(self, name: str, environment: str, context: dict) -> str | None:
        """The environment's protection rules, as GitHub applies them before the job starts: the
        deployment branches, then the required review (prevent self-review). None: the job may run."""
        settings = self.environments.get(environment)
        if settings is None:
            return f"environment {environment!r} does not exist"
        branch = self.event.ref.removeprefix("refs/heads/")
        if settings.get("branches") and (not self.event.ref.startswith("refs/heads/")
                                         or not matches(branch, settings["branches"])):
            return f"branch {self.event.ref} is not allowed to deploy to {environment} due to environment protection rules"
        review = settings.get("review")
        if review is not None:
            decision = review(self, name)
            if decision is None:
                return f"the deployment to {environment} was not approved"
            login, comment = decision
            if settings.get("prevent_self_review") and login == self.event.actor:
                return f"{login} cannot approve their own run (prevent self-review)"
            self.github.review(self.run_record, environment, "approved", login, comment)
        context["vars"] = {**context["vars"], **settings.get("vars", {})}
        context["secrets"] = {**context["secrets"], **settings.get("secrets", {})}
        return None

    def _job(self, name: str, job: dict, context: dict, workflow_env: dict, permissions) -> tuple[str, dict]:
        environment = interpolate(job.get("environment"), context)
        if environment:
            context = {**context}
            refused = self._enter_environment(name, environment, context)
            if refused:
                self.result.logs.append(StepLog(name, f"environment {environment}", "failure", refused))
                return "failure", {}
        runner = self.workdir / "runners" / f"{next(self._runners):03d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        workspace, temp, home = runner / "work", runner / "temp", runner / "home"
        for folder in (workspace, temp, home):
            folder.mkdir(parents=True)
        perms = dict(permissions or {})
        token = self.github.token(**{k.replace("-", "_"): v for k, v in perms.items() if k != "id-token"})
        self.result.tokens[name] = perms
        runner_name = f"GitHub Actions {runner.name[:3]}"
        record = self.github.add_job(self.run_record, name, runner_name,
                                     started_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
        files = {n: temp / f"_runner_file_commands/{n.lower()}" for n in
                 ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        files["GITHUB_OUTPUT"].parent.mkdir()
        for path in files.values():
            path.touch()
        github = self._github_context(workspace, token)
        state = {"workspace": workspace, "temp": temp, "home": home, "runner": runner_name, "files": files,
                 "path": [], "env": {}, "steps": {}, "status": "success", "environment": environment,
                 "permissions": perms}
        context = {**context, "github": github, "runner": {"temp": str(temp), "name": runner_name, "os": "Linux"},
                   "steps": state["steps"]}
        context["env"] = {**workflow_env, **interpolate(job.get("env") or {}, context)}
        state["job_env"] = context["env"]
        for step in job.get("steps", []):
            self._step(name, step, context, state)
        record["status"], record["conclusion"] = "completed", state["status"]
        self.result.summaries[name] = files["GITHUB_STEP_SUMMARY"].read_text()
        outputs = interpolate(job.get("outputs") or {}, context)
        return state["status"], outputs

    def _step(self, job_name: str, step: dict, context: dict, state: dict, inputs: dict | None = None) -> None:
        label = step.get("name") or step.get("uses") or step.get("run", "").splitlines()[0]
        context = {**context, "env": {**context["env"], **state["env"]}, "inputs": inputs or context.get("inputs", {})}
        if not condition(step.get("if"), context, state["status"]):
            self.result.logs.append(StepLog(job_name, label, "skipped", ""))
            return
        if label in self.skip_steps:
            self.result.logs.append(StepLog(job_name, label, "skipped", f"not executed: {self.skip_steps[label]}"))
            return
        step_env = {k: _text(v) for k, v in interpolate(step.get("env") or {}, context).items()}
        started = time.monotonic()
        try:
            if "run" in step:
                output = self._shell(step["run"], {**{k: _text(v) for k, v in context["env"].items()}, **step_env},
                                     state, step.get("id"))
            elif step["uses"].startswith("./"):
                output = self._composite(job_name, step, context, state)
            else:
                action = step["uses"].split("@")[0]
                if action not in ACTIONS:
                    raise StepFailed(f"the emulation has no fake for {step['uses']}")
                output = ACTIONS[action](self, interpolate(step.get("with") or {}, context), state)
            self.result.logs.append(StepLog(job_name, label, "success", output, time.monotonic() - started))
        except StepFailed as exc:
            state["status"] = "failure"
            self.result.logs.append(StepLog(job_name, label, "failure", str(exc), time.monotonic() - started))

    def _composite(self, job_name: str, step: dict, context: dict, state: dict) -> str:
        action = load_workflow(state["workspace"] / step["uses"].removeprefix("./") / "action.yml")
        declared = action.get("inputs") or {}
        given = interpolate(step.get("with") or {}, context)
        inputs = {k: given.get(k, spec.get("default")) for k, spec in declared.items()}
        before = len(self.result.logs)
        for inner in action["runs"]["steps"]:
            if "run" in inner and inner.get("shell") != "bash":
                raise StepFailed("composite run steps need `shell: bash`")
            self._step(job_name, inner, context, state, inputs)
        failed = [log for log in self.result.logs[before:] if log.result == "failure"]
        if failed:
            raise StepFailed(f"composite step {failed[0].step} failed")
        return f"composite {step['uses']}: {len(self.result.logs) - before} step(s)"

    def _environment(self, env: dict, state: dict) -> dict:
        files = state["files"]
        machine = dict(self.machine_env)
        path = os.pathsep.join([*state["path"], machine.get("PATH", "/usr/bin:/bin")])
        github = {
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(state["workspace"]),
            "GITHUB_REPOSITORY": f"{OWNER}/{REPO}", "GITHUB_API_URL": self.github.api_url,
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": str(self.run_record.id),
            "GITHUB_RUN_ATTEMPT": "1", "GITHUB_SHA": self.event.sha, "GITHUB_REF": self.event.ref,
            "GITHUB_EVENT_NAME": self.event.name, "GITHUB_EVENT_PATH": str(self.event_path),
            "GITHUB_BASE_REF": self.event.base_ref, "GITHUB_HEAD_REF": self.event.head_ref,
            "GITHUB_ACTOR": self.event.actor, "GITHUB_TRIGGERING_ACTOR": self.event.actor,
            "RUNNER_TEMP": str(state["temp"]), "RUNNER_NAME": state["runner"], "RUNNER_OS": "Linux",
            "HOME": str(state["home"]), **{k: str(v) for k, v in files.items()},
            "PYTHONPATH": str(state["workspace"] / "src"),  # the checkout's genaiops, not the venv's install
        }
        return {**machine, **github, **state["env"], **env, "PATH": path}

    def _shell(self, script: str, env: dict, state: dict, step_id: str | None) -> str:
        path = state["temp"] / f"{uuid.uuid4().hex}.sh"
        path.write_text(script)
        files = state["files"]
        files["GITHUB_OUTPUT"].write_text("")
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
                              cwd=state["workspace"], env=self._environment(env, state), capture_output=True,
                              text=True, timeout=3600, check=False)
        output = done.stdout + done.stderr
        if step_id:
            state["steps"][step_id] = {"outputs": _key_values(files["GITHUB_OUTPUT"].read_text())}
        state["env"].update(_key_values(files["GITHUB_ENV"].read_text()))
        files["GITHUB_ENV"].write_text("")
        state["path"][:0] = [line for line in files["GITHUB_PATH"].read_text().splitlines() if line][::-1]
        files["GITHUB_PATH"].write_text("")
        if done.returncode != 0:
            raise StepFailed(f"exit {done.returncode}\n{output}")
        return output

    def link_venv(self, workspace: Path) -> None:
        """The checkout's `.venv` is the installed one: `make setup` must find it up to date (the stamp
        newer than pyproject.toml and the engine requirements) and never reinstall into it. A venv
        whose stamp is of another pyproject.toml (a machine whose shared venv was installed from
        another tree) is linked through a private overlay carrying this checkout's stamp; the code
        run is the checkout's either way (PYTHONPATH, `_environment`)."""
        stamp = ".installed-" + subprocess.run(
            f"cat pyproject.toml {AGENT_FRAMEWORK_REQUIREMENTS} | cksum | cut -d' ' -f1", shell=True, cwd=workspace,
            capture_output=True, text=True, check=True).stdout.strip()
        venv = self.venv
        if not (venv / stamp).exists():
            venv = self.workdir / f"venv-overlay{stamp}"
            if not venv.exists():
                venv.mkdir(parents=True)
                for entry in self.venv.iterdir():
                    if not entry.name.startswith(".installed-"):
                        (venv / entry.name).symlink_to(entry)
                (venv / stamp).touch()
        (workspace / ".venv").symlink_to(venv)
        older = (venv / stamp).stat().st_mtime - 60
        for dependency in ("pyproject.toml", AGENT_FRAMEWORK_REQUIREMENTS):
            if (workspace / dependency).is_file():
                os.utime(workspace / dependency, (older, older))
        if subprocess.run(["make", "-q", "setup"], cwd=workspace, capture_output=True).returncode != 0:
            raise StepFailed(f"{self.venv} does not satisfy `make setup` for this checkout")


def _list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _key_values(text: str) -> dict[str, str]:
    values, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            key, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


# -- action fakes --------------------------------------------------------------------------------------

def _checkout(runner: Runner, inputs: dict, state: dict) -> str:
    """actions/checkout: a clone of the event's commit (all history with fetch-depth 0, which the
    change detection needs; the origin's branches are remote-tracking refs, as after a fetch)."""
    workspace = state["workspace"]
    shutil.rmtree(workspace)
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(runner.origin), str(workspace)], check=True)
    subprocess.run(["git", "-C", str(workspace), "checkout", "--quiet", runner.event.sha], check=True)
    runner.link_venv(workspace)
    return f"checked out {runner.event.sha[:12]}"


def _setup_python(runner: Runner, inputs: dict, state: dict) -> str:
    """actions/setup-python: that Python first on PATH (here: the venv's base interpreter; another
    version fails, as the tool cache would not have it). The pip cache is not emulated."""
    wanted, actual = str(inputs.get("python-version")), f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted != actual:
        raise StepFailed(f"Python {wanted} is not in the tool cache (emulation has {actual})")
    tools = state["temp"] / "python-tool"
    tools.mkdir(exist_ok=True)
    base = Path(sys.base_prefix) / "bin" / f"python{actual}"
    for alias in ("python", "python3"):
        if not (tools / alias).exists():
            (tools / alias).symlink_to(base)
    state["path"].insert(0, str(tools))
    return f"using {base}"


def _upload(runner: Runner, inputs: dict, state: dict) -> str:
    """actions/upload-artifact: the folder (or file) stored under the run; a name that exists is an
    error unless `overwrite`; no files: an error, a warning or nothing (`if-no-files-found`)."""
    name, source = inputs["name"], Path(inputs["path"])
    if name in runner.result.artifacts and str(inputs.get("overwrite")).lower() != "true":
        raise StepFailed(f"an artifact with the name {name} already exists for this run")
    if not source.exists() or (source.is_dir() and not any(source.rglob("*"))):
        mode = inputs.get("if-no-files-found", "warn")
        if mode == "error":
            raise StepFailed(f"no files were found with the provided path: {source}")
        return f"no files at {source} ({mode})"
    stored = runner.workdir / "artifacts" / str(runner.run_record.id) / name
    shutil.rmtree(stored, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, stored)
    else:
        stored.mkdir(parents=True)
        shutil.copy2(source, stored)
    runner.result.artifacts[name] = stored
    archive = io.BytesIO()  # and on GitHub's artifacts API, where later runs find it
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(stored.rglob("*")):
            if path.is_file():
                bundle.write(path, str(path.relative_to(stored)))
    runner.github.add_artifact(name, archive.getvalue(), runner.run_record.id,
                               datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))
    return f"uploaded {name}"


def _download(runner: Runner, inputs: dict, state: dict) -> str:
    """actions/download-artifact: an artifact of this run by name into `path`."""
    name = inputs["name"]
    if name not in runner.result.artifacts:
        raise StepFailed(f"unable to download artifact(s): artifact not found: {name}")
    shutil.copytree(runner.result.artifacts[name], Path(inputs.get("path") or state["workspace"]),
                    dirs_exist_ok=True)
    return f"downloaded {name}"


def _azure_login(runner: Runner, inputs: dict, state: dict) -> str:
    """azure/login with OIDC: the job needs `id-token: write`; Entra ID accepts the token only when
    a federated credential has its subject, repo:<owner>/<repo>:environment:<the job's environment>
    (jobs without an environment: ...:ref:<ref>), and that credential's client id. The sign-in the
    `az` fake reads is written to a fresh AZURE_CONFIG_DIR for the rest of the job; no secret."""
    if state["permissions"].get("id-token") != "write":
        raise StepFailed("Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable (id-token: write missing)")
    environment = state.get("environment")
    subject = f"repo:{OWNER}/{REPO}:" + (f"environment:{environment}" if environment else f"ref:{runner.event.ref}")
    credential = runner.federated.get(subject)
    if credential is None or credential["client_id"] != inputs.get("client-id"):
        raise StepFailed(f"AADSTS700213: No matching federated identity record found for presented assertion "
                         f"subject '{subject}'")
    config = state["temp"] / "azcli"
    config.mkdir(exist_ok=True)
    (config / "login.json").write_text(json.dumps(credential["login"]))
    state["env"]["AZURE_CONFIG_DIR"] = str(config)
    return f"signed in as {credential['client_id']} ({subject})"


ACTIONS = {
    "azure/login": _azure_login,
    "actions/checkout": _checkout,
    "actions/setup-python": _setup_python,
    "actions/upload-artifact": _upload,
    "actions/download-artifact": _download,
}


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)
