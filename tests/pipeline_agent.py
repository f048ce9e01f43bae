"""Azure Pipelines, emulated: run the expanded entry pipeline (`pipeline_schema.expand_pipeline`) for
one trigger the way Azure DevOps and its agent would, executing every script step for real.

What is emulated as Azure DevOps does it (and what the contract test therefore checks):
- stages and jobs in dependency order; `condition:` evaluated with succeeded()/failed()/...,
  `variables[...]`, `dependencies.<stage|job>.result|outputs[...]`; `$[ ]` job variables from
  `dependencies` / `stageDependencies` outputs;
- variables: pipeline, stage (variable groups from a fixture) and job scope, predefined variables
  (Build.*, System.*, Pipeline.Workspace, ...); `$(macro)` expansion of scripts, inputs and env;
  every non-secret variable exported as an environment variable (NAME_UPPER, `.` -> `_`), secret
  ones (and System.AccessToken) only through a step's `env:` mapping;
- each job runs on a fresh "agent": its own Pipeline.Workspace, HOME and a fresh `git clone` of the
  commit (deployment jobs check out only with an explicit `checkout: self`; server jobs never);
  state passes between jobs only through artifacts and output variables;
- "Rerun failed jobs" (`rerun_failed_jobs`): the failed jobs again, as attempt 2, in the same run;
  their stages evaluate their environment checks again, and the timeline shows the latest attempt
  (earlier attempts' records of those jobs and checks are dropped, as `previousAttempts` hold them);
  `time_passes` ages everything the run recorded, as if the rerun came that much later;
- logging commands: task.setvariable (isOutput), task.prependpath, build.addbuildtag,
  task.logissue, task.complete;
- the run's timeline (Stage / Job / Task records with the display name as recorded - macros
  expanded - and finishTime) in the Azure DevOps fake, which is what genaiops reads back for the
  approval check;
- environments (`environments`, as configured in the project): their checks are evaluated when a
  stage that uses the environment (a deployment job) starts, for the whole stage - an Approvals
  check (Checkpoint / Checkpoint.Approval records, the approval with its steps and approver served
  by the approvals API; only listed approvers, optionally never the run's requester), then an
  Exclusive lock, held until the stage completes: a stage that finds the lock taken waits
  (`RunResult.lock_waits`), as with `lockBehavior: sequential`.

Tasks that are not scripts run as small explicit fakes (`TASKS` below), each documented:
UsePythonVersion@0, Cache@2, AzureCLI@2, PublishPipelineArtifact@1, DownloadPipelineArtifact@2,
PublishTestResults@2, ManualValidation@0/@1. An unknown task fails the step.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pipeline_schema as ps
from fakes.ado import DEFINITION_ID, PROJECT, PROJECT_ID, FakeAzureDevOps, Run

MACRO = re.compile(r"\$\(([A-Za-z0-9_.\-]+)\)")
RUNTIME = re.compile(r"^\s*\$\[(.*)\]\s*$", re.DOTALL)
LOGGING = re.compile(r"##vso\[([\w.]+)([^\]]*)\](.*)")
OK = ("Succeeded", "SucceededWithIssues")

AGENT_FRAMEWORK_REQUIREMENTS = "src/genaiops/engines/agent_framework/runtime/requirements.txt"


@dataclass
class Trigger:
    branch: str  # refs/heads/...
    commit: str  # what the agent checks out (a PR: the merge commit)
    reason: str = "IndividualCI"  # IndividualCI | BatchedCI | PullRequest | Manual
    target_branch: str = ""  # PullRequest: refs/heads/<target>
    requested_for: str = "dana.dev@contoso.com"


@dataclass
class Decision:
    """An approver's answer to a ManualValidation: approved | rejected | defer (still pending)."""

    status: str
    approver: str = ""
    comment: str = ""


@dataclass
class Validation:
    stage: str
    job: str
    instructions: str
    inputs: dict
    decision: Decision | None = None
    kind: str = "manual_validation"  # | environment (an Approvals check of the stage's environment)


@dataclass
class StepLog:
    stage: str
    job: str
    step: str
    result: str
    output: str
    seconds: float = 0.0


@dataclass
class RunResult:
    run: Run
    stages: dict[str, str] = field(default_factory=dict)
    jobs: dict[tuple[str, str], str] = field(default_factory=dict)
    logs: list[StepLog] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    lock_waits: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, environment, holder)
    implicit_downloads: list[tuple[str, str]] = field(default_factory=list)
    cache_steps: list[dict] = field(default_factory=list)
    azure_cli_steps: list[dict] = field(default_factory=list)
    trigger: Trigger | None = None
    internal: dict = field(default_factory=dict, repr=False)  # what a rerun of this run needs

    def output(self, stage: str | None = None, job: str | None = None) -> str:
        return "\n".join(f"--- {log.stage}/{log.job}/{log.step}: {log.result}\n{log.output}" for log in self.logs
                         if stage in (None, log.stage) and job in (None, log.job))

    def timings(self) -> str:
        return "\n".join(f"{log.seconds:7.1f}s  {log.stage}/{log.job}/{log.step}" for log in self.logs
                         if log.seconds >= 1)

    def failures(self) -> str:
        return "\n".join(f"--- {log.stage}/{log.job}/{log.step}: {log.result}\n{log.output[-6000:]}"
                         for log in self.logs if log.result == "Failed")


class StepFailed(Exception):
    pass


class Deferred(Exception):
    """A ManualValidation, an environment approval or an Exclusive lock is still pending: the stage
    waits while others run."""


@dataclass
class Agent:
    origin: Path  # git repository the agent clones
    ado: FakeAzureDevOps
    variable_groups: dict[str, dict[str, str]]
    secret_variables: set[str]  # names that are secret in the groups
    service_connections: dict[str, dict]  # name -> the sign-in the AzureCLI@2 fake writes for az
    machine_env: dict[str, str]  # the agent machine's environment (PATH, network settings, caches)
    venv: Path  # the virtual environment `make setup` would build (linked into each clone)
    workdir: Path
    approver: Callable[[Validation, int], Decision]  # (validation, call number) -> decision
    skip_steps: dict[str, str] = field(default_factory=dict)  # displayName -> why it is not executed
    # name -> {"exclusive_lock": bool, "approvers": [...], "allow_own_runs": bool, "instructions": str}
    environments: dict[str, dict] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    artifacts: Path = field(init=False)

    def __post_init__(self):
        self.artifacts = self.workdir / "artifacts"
        self._uid = itertools.count(1)
        self.locks: dict[str, str] = {}  # environment -> the stage (run/stage) holding its Exclusive lock

    # -- a run ------------------------------------------------------------------------------------
    def run(self, pipeline: dict, trigger: Trigger) -> RunResult:
        run = self.ado.new_run(trigger.branch, trigger.reason, trigger.requested_for, trigger.commit)
        result = RunResult(run, trigger=trigger)
        self.trigger, self.result = trigger, result
        if not triggers(pipeline, trigger):
            self.ado.finish(run, "notTriggered")
            return result
        stages = pipeline["stages"]
        order = [s["stage"] for s in stages]
        self.stage_records: dict[str, dict] = {}
        for index, stage in enumerate(stages):
            self.stage_records[stage["stage"]] = self._record(None, "Stage", stage.get("displayName", stage["stage"]),
                                                              identifier=stage["stage"], state="pending", order=index)
        self.pipeline_vars = {**self._run_variables(), **_variables(pipeline.get("variables"), {})}
        self.stage_state: dict[str, dict] = {}
        result.internal = {"stage_records": self.stage_records, "pipeline_vars": self.pipeline_vars,
                           "stage_state": self.stage_state}
        return self._execute(pipeline, list(order))

    def rerun_failed_jobs(self, pipeline: dict, result: RunResult) -> RunResult:
        """Azure DevOps' "Rerun failed jobs" on a completed run: each failed job runs again as the
        next attempt (jobs that succeeded keep their outputs), its stage evaluates its environment
        checks again, and stages skipped because of it are evaluated again."""
        self.trigger, self.result = result.trigger, result
        self.stage_records = result.internal["stage_records"]
        self.pipeline_vars = result.internal["pipeline_vars"]
        self.stage_state = result.internal["stage_state"]
        order = [s["stage"] for s in pipeline["stages"]]
        by_name = {s["stage"]: s for s in pipeline["stages"]}
        again = [n for n in order if result.stages.get(n) == "Failed"]
        for name in order:  # downstream stages that were skipped because of a failed one
            if result.stages.get(name) == "Skipped" and set(self._stage_deps(by_name[name], order)) & set(again):
                again.append(name)
        stale = set()
        for name in again:
            state = self.stage_state.get(name, {})
            for job, outcome in list(state.get("jobs", {}).items()):
                if outcome in ("Failed", "Canceled", "Skipped"):
                    del state["jobs"][job]
                    runtime = state.get("job_runtime", {}).pop(f"{name}.{job}", None)
                    if runtime:
                        stale.add(runtime["record"]["id"])
                    self.result.jobs.pop((name, job), None)
                    attempts = state.setdefault("attempts", {})
                    attempts[job] = attempts.get(job, 1) + 1
            for key in ("checks", "approval"):
                state.pop(key, None)
            state["started"] = False
            stale |= {r["id"] for r in result.run.timeline if r["type"] in ("Checkpoint", "Checkpoint.Approval")
                      and self._below(result.run.timeline, r, self.stage_records[name]["id"])}
            result.stages.pop(name, None)
            self.stage_records[name].update(state="pending", result=None)
        result.run.timeline[:] = [r for r in result.run.timeline
                                  if r["id"] not in stale and not self._below(result.run.timeline, r, stale)]
        result.run.status = "inProgress"
        return self._execute(pipeline, [n for n in order if n in again])

    @staticmethod
    def _below(records: list[dict], record: dict, ancestors) -> bool:
        ancestors = {ancestors} if isinstance(ancestors, str) else set(ancestors)
        parents = {r["id"]: r.get("parentId") for r in records}
        parent = record.get("parentId")
        while parent is not None:
            if parent in ancestors:
                return True
            parent = parents.get(parent)
        return False

    @staticmethod
    def time_passes(ado: FakeAzureDevOps, result: RunResult, delta: timedelta) -> None:
        """Everything the run recorded (timeline, its approvals) becomes `delta` older, as if now
        were `delta` later: what genaiops, reading the real clock, then sees of an old approval."""
        ids = {r["id"] for r in result.run.timeline}

        def older(record: dict) -> None:
            for key in ("finishTime", "lastModifiedOn", "createdOn"):
                if record.get(key):
                    when = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", record[key]).replace("Z", "+00:00"))
                    record[key] = _iso(when - delta)
        for record in result.run.timeline:
            older(record)
        for approval_id, approval in ado.approvals.items():
            if approval_id in ids:
                older(approval)
                for step in approval.get("steps") or []:
                    older(step)

    def _execute(self, pipeline: dict, pending: list[str]) -> RunResult:
        result, run = self.result, self.result.run
        stages = pipeline["stages"]
        order = [s["stage"] for s in stages]
        by_name = {s["stage"]: s for s in stages}
        waits = 0
        while pending:
            name = next((n for n in pending if all(d in result.stages for d in self._stage_deps(by_name[n], order))),
                        None)
            if name is None:
                raise AssertionError(f"stage dependency cycle among {pending}")
            pending.remove(name)
            try:
                result.stages[name] = self._stage(by_name[name], order)
                self._finish(self.stage_records[name], result.stages[name])
                self._release_locks(name)
            except Deferred:
                pending.append(name)
                waits += 1
                if waits > 20:
                    raise AssertionError(f"stage {name} waits for an approval forever") from None
        overall = "failed" if any(r == "Failed" for r in result.stages.values()) else \
            "partiallySucceeded" if any(r == "SucceededWithIssues" for r in result.stages.values()) else "succeeded"
        self.ado.finish(run, overall)
        return result

    def _stage_deps(self, stage: dict, order: list[str]) -> list[str]:
        if "dependsOn" in stage:
            deps = stage["dependsOn"]
            return deps if isinstance(deps, list) else [deps] if deps else []
        index = order.index(stage["stage"])
        return [order[index - 1]] if index else []

    # -- stages -------------------------------------------------------------------------------------
    def _stage(self, stage: dict, order: list[str]) -> str:
        name = stage["stage"]
        state = self.stage_state.setdefault(name, {"jobs": {}, "outputs": {}, "started": False})
        record = self.stage_records[name]
        deps = self._stage_deps(stage, order)
        if not state["started"]:
            context = self._expression_context(self.pipeline_vars, {
                d: {"result": self.result.stages[d],
                    "outputs": _flatten(self.stage_state.get(d, {}).get("outputs", {}), depth=2)} for d in deps})
            condition = stage.get("condition", "succeeded()")
            if not self._condition(condition, context, [self.result.stages[d] for d in deps]):
                return "Skipped"
            state["variables"] = {**self.pipeline_vars, **_variables(stage.get("variables"), self.variable_groups)}
            if not self._environment_checks(stage, state):  # Deferred: approval pending or lock taken
                return "Failed"
            state["started"] = True
            record["state"] = "inProgress"
        jobs = stage["jobs"]
        job_order = [_job_name(j) for j in jobs]
        for job in jobs:
            job_name = _job_name(job)
            if job_name in state["jobs"]:
                continue
            deps_raw = job.get("dependsOn", [])
            job_deps = deps_raw if isinstance(deps_raw, list) else [deps_raw] if deps_raw else []
            missing = [d for d in job_deps if d not in job_order]
            if missing:
                raise AssertionError(f"{name}/{job_name} depends on unknown job(s) {missing}")
            job_result = self._job(stage, job, state, job_deps)
            state["jobs"][job_name] = job_result
            self.result.jobs[(name, job_name)] = job_result
        results = list(state["jobs"].values())
        if any(r in ("Failed", "Canceled") for r in results):
            return "Failed"
        if all(r == "Skipped" for r in results):
            return "Skipped"
        return "SucceededWithIssues" if "SucceededWithIssues" in results else "Succeeded"

    # -- jobs -----------------------------------------------------------------------------------
    def _job(self, stage: dict, job: dict, state: dict, deps: list[str]) -> str:
        stage_name, job_name = stage["stage"], _job_name(job)
        key = f"{stage_name}.{job_name}"
        jobs_state = state.setdefault("job_runtime", {})
        runtime = jobs_state.get(key)
        if runtime is None:
            dep_results = [state["jobs"][d] for d in deps]
            dependencies = {d: {"result": state["jobs"][d], "outputs": _flatten(state["outputs"].get(d, {}), 1)}
                            for d in deps}
            stage_deps = {s: {j: {"outputs": _flatten(o, 1)} for j, o in self.stage_state.get(s, {}).get("outputs",
                                                                                                         {}).items()}
                          for s in self.result.stages}
            context = self._expression_context(state["variables"], dependencies, stage_deps)
            if not self._condition(job.get("condition", "succeeded()"), context, dep_results):
                self._record(self.stage_records[stage_name]["id"], "Job", job.get("displayName", job_name),
                             identifier=key, state="completed", result="skipped")
                return "Skipped"
            variables = dict(state["variables"])
            for var_name, value in _variables(job.get("variables"), self.variable_groups).items():
                match = RUNTIME.match(str(value))
                variables[var_name] = _text(ps.evaluate(match.group(1), context, lenient=True)) if match else value
            attempt = state.get("attempts", {}).get(job_name, 1)
            runtime = {"variables": variables, "step": 0, "outputs": {}, "set": {},
                       "record": self._record(self.stage_records[stage_name]["id"], "Job",
                                              job.get("displayName", job_name), identifier=key, state="inProgress",
                                              attempt=attempt),
                       "agent": self._new_agent(stage, job, variables, attempt)}
            jobs_state[key] = runtime
        try:
            result = self._steps(stage, job, runtime)
        finally:
            state["outputs"][job_name] = runtime["outputs"]
        self._finish(runtime["record"], result)
        return result

    def _new_agent(self, stage: dict, job: dict, variables: dict, attempt: int = 1) -> dict:
        """A fresh machine for one job: workspace folders, HOME, the checkout."""
        workspace = self.workdir / "agents" / f"{next(self._uid):03d}-{stage['stage']}-{_job_name(job)}"
        sources = workspace / "s"
        for part in ("a", "b", "TestResults", "_temp", "home"):
            (workspace / part).mkdir(parents=True, exist_ok=True)
        steps = ps.job_steps(job)
        server = job.get("pool") == "server"
        deployment = "deployment" in job
        checkout = not server and (not deployment or any(s.get("checkout") == "self" for s in steps))
        if not server and not any(s.get("checkout") == "none" for s in steps) and checkout:
            subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(self.origin), str(sources)], check=True)
            subprocess.run(["git", "-C", str(sources), "checkout", "--quiet", self.trigger.commit], check=True)
            self._link_venv(sources)
        else:
            sources.mkdir(parents=True, exist_ok=True)
        if deployment and not any("download" in s for s in steps):
            for name, folder in self.result.run.artifacts.items():  # a deployment job downloads everything
                shutil.copytree(folder, workspace / name, dirs_exist_ok=True)
                self.result.implicit_downloads.append((stage["stage"], name))
        predefined = {
            **self._run_variables(),
            "Pipeline.Workspace": str(workspace), "Agent.BuildDirectory": str(workspace),
            "Build.SourcesDirectory": str(sources), "System.DefaultWorkingDirectory": str(sources),
            "Build.ArtifactStagingDirectory": str(workspace / "a"), "Build.BinariesDirectory": str(workspace / "b"),
            "Common.TestResultsDirectory": str(workspace / "TestResults"),
            "Agent.TempDirectory": str(workspace / "_temp"), "Agent.OS": "Linux",
            "System.StageName": stage["stage"], "System.StageAttempt": "1", "System.JobName": _job_name(job),
            "System.JobAttempt": str(attempt),
        }
        variables.update(predefined)
        variables["System.AccessToken"] = self.result.run.token
        return {"workspace": workspace, "sources": sources, "path": [], "server": server}

    def _run_variables(self) -> dict:
        """Predefined variables known for the whole run (stage conditions see them too)."""
        run, trigger = self.result.run, self.trigger
        values = {
            "Build.BuildId": str(run.id), "Build.BuildNumber": f"2026.{run.id}", "Build.SourceBranch": trigger.branch,
            "Build.SourceBranchName": trigger.branch.rsplit("/", 1)[-1], "Build.SourceVersion": trigger.commit,
            "Build.Reason": trigger.reason, "Build.RequestedFor": trigger.requested_for,
            "Build.Repository.Name": "genaiops", "System.CollectionUri": self.ado.collection_uri,
            "System.TeamProject": PROJECT, "System.TeamProjectId": PROJECT_ID, "System.DefinitionId": DEFINITION_ID,
            "TF_BUILD": "True",
        }
        if trigger.reason == "PullRequest":
            values["System.PullRequest.TargetBranch"] = trigger.target_branch
        return values

    def _link_venv(self, sources: Path) -> None:
        """The clone's `.venv` is the installed one this suite runs in: `make setup` must find it up
        to date (its stamp for this checkout's pyproject.toml and engine requirements, newer than
        them: `make -q setup` says so) and never reinstall into it."""
        (sources / ".venv").symlink_to(self.venv)
        stamps = list(self.venv.glob(".installed-*"))  # a shared venv may hold several
        if stamps:
            older = min(stamp.stat().st_mtime for stamp in stamps) - 60
            for dependency in ("pyproject.toml", AGENT_FRAMEWORK_REQUIREMENTS):
                if (sources / dependency).is_file():
                    os.utime(sources / dependency, (older, older))
        if subprocess.run(["make", "-q", "setup"], cwd=sources, capture_output=True).returncode != 0:
            raise AssertionError(f"{self.venv} was not installed from this checkout: run `make setup`")

    # -- steps ----------------------------------------------------------------------------------
    def _steps(self, stage: dict, job: dict, runtime: dict) -> str:
        steps = ps.job_steps(job)
        results = runtime.setdefault("results", [])
        agent = runtime["agent"]
        for index in range(runtime["step"], len(steps)):
            step = steps[index]
            label = step.get("displayName") or step.get("task") or step.get("name") or next(iter(step))
            if agent["server"] and "task" not in step:
                raise AssertionError(f"{stage['stage']}/{_job_name(job)}: an agentless job runs tasks only")
            if any(k in step for k in ("checkout", "download")) and "task" not in step:
                continue
            context = self._expression_context(self._macro_vars(runtime), {})
            condition = step.get("condition", "succeeded()")
            if not self._condition(condition, context, results, step_level=True):
                results.append("Skipped")
                continue
            record = runtime.pop("waiting_record", None) or self._record(
                runtime["record"]["id"], "Task", self._expand(label, runtime), state="inProgress",
                task={"name": step["task"].split("@")[0], "version": step["task"].split("@")[1]}
                if "task" in step else None)
            started = time.monotonic()
            try:
                output = self._step(stage, job, step, runtime, record)
                result = "Succeeded"
            except Deferred:
                runtime["step"], runtime["waiting_record"] = index, record  # the same task, still waiting
                raise
            except StepFailed as exc:
                output = str(exc)
                result = "SucceededWithIssues" if ps_truthy(step.get("continueOnError")) else "Failed"
            self._finish(record, result)
            self.result.logs.append(StepLog(stage["stage"], _job_name(job), label, result, output,
                                            round(time.monotonic() - started, 1)))
            results.append(result)
        runtime["step"] = len(steps)
        if "Failed" in results:
            return "Failed"
        return "SucceededWithIssues" if "SucceededWithIssues" in results else "Succeeded"

    def _step(self, stage: dict, job: dict, step: dict, runtime: dict, record: dict) -> str:
        label = step.get("displayName", "")
        if label in self.skip_steps:
            return f"not executed by the emulation: {self.skip_steps[label]}"
        if "script" in step or "bash" in step:
            return self._shell(step.get("script", step.get("bash")), step, runtime)
        name = step["task"]
        handler = TASKS.get(name.split("@")[0].lower())
        if handler is None:
            raise StepFailed(f"the emulation has no fake for task {name}")
        inputs = {k: self._expand(str(v), runtime) for k, v in (step.get("inputs") or {}).items()}
        return handler(self, stage, job, step, inputs, runtime, record)

    def _macro_vars(self, runtime: dict) -> dict:
        values = dict(runtime["variables"])
        values.update(runtime["set"])
        for step_name, outputs in runtime["outputs"].items():
            values.update({f"{step_name}.{k}": v for k, v in outputs.items()})
        return values

    def _expand(self, text: str, runtime: dict) -> str:
        values = {k.lower(): v for k, v in self._macro_vars(runtime).items()}
        for _ in range(5):  # variables may hold macros of other variables
            expanded = MACRO.sub(lambda m: str(values.get(m.group(1).lower(), m.group(0))), text)
            if expanded == text:
                break
            text = expanded
        return text

    def _environment(self, step: dict, runtime: dict) -> dict:
        env = dict(self.machine_env)
        env["HOME"] = str(runtime["agent"]["workspace"] / "home")
        for name, value in self._macro_vars(runtime).items():
            if name in self.secret_variables or name == "System.AccessToken":
                continue
            env[re.sub(r"[.\-\s]", "_", name).upper()] = self._expand(str(value), runtime)
        for step_name, outputs in runtime["outputs"].items():
            env.update({f"{step_name}_{k}".upper(): v for k, v in outputs.items()})
        env.update({k: self._expand(str(v), runtime) for k, v in (step.get("env") or {}).items()})
        if runtime["agent"]["path"]:
            env["PATH"] = os.pathsep.join([*runtime["agent"]["path"], env.get("PATH", "")])
        return env

    def _shell(self, script: str, step: dict, runtime: dict, extra_env: dict | None = None) -> str:
        agent = runtime["agent"]
        path = agent["workspace"] / "_temp" / f"{uuid.uuid4().hex}.sh"
        path.write_text(self._expand(script, runtime))
        env = {**self._environment(step, runtime), **(extra_env or {})}
        timeout = int(step.get("timeoutInMinutes", 0) or 0) * 60 or 3600
        try:
            done = subprocess.run(["bash", "--noprofile", "--norc", str(path)], cwd=agent["sources"], env=env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"timed out after {timeout}s") from None
        output = done.stdout + done.stderr
        failed = self._logging_commands(done.stdout, step, runtime)
        if done.returncode != 0 or failed:
            raise StepFailed(f"exit {done.returncode}\n{output}")
        return output

    def _logging_commands(self, stdout: str, step: dict, runtime: dict) -> bool:
        failed = False
        for line in stdout.splitlines():
            match = LOGGING.search(line)
            if not match:
                continue
            command, props, value = match.group(1), match.group(2).strip(), match.group(3)
            options = dict(p.split("=", 1) for p in props.split(";") if "=" in p)
            if command == "task.setvariable":
                if ps_truthy(options.get("isOutput")):
                    runtime["outputs"].setdefault(step.get("name", ""), {})[options["variable"]] = value
                else:
                    runtime["set"][options["variable"]] = value
            elif command == "task.prependpath":
                runtime["agent"]["path"].insert(0, value)
            elif command == "build.addbuildtag":
                self.result.run.tags.append(value)
            elif command == "task.complete" and options.get("result", "").lower() == "failed":
                failed = True
        return failed

    # -- expressions and timeline -----------------------------------------------------------------
    def _expression_context(self, variables: dict, dependencies: dict, stage_dependencies: dict | None = None):
        return {"variables": dict(variables), "dependencies": dependencies,
                "stageDependencies": stage_dependencies or {}}

    def _condition(self, condition: str, context: dict, results: list, step_level: bool = False) -> bool:
        if step_level:
            functions = {"succeeded": lambda *a: all(r in OK + ("Skipped",) for r in results),
                         "failed": lambda *a: "Failed" in results,
                         "succeededOrFailed": lambda *a: True, "always": lambda *a: True,
                         "canceled": lambda *a: False}
        else:  # a skipped dependency is not a success
            functions = {"succeeded": lambda *a: all(r in OK for r in results),
                         "failed": lambda *a: "Failed" in results,
                         "succeededOrFailed": lambda *a: all(r in (*OK, "Failed") for r in results),
                         "always": lambda *a: True, "canceled": lambda *a: False}
        value = ps.evaluate(str(condition), context, functions, lenient=True)
        return ps_truthy(value)

    def _record(self, parent: str | None, kind: str, name: str, **fields) -> dict:
        record = {"id": str(uuid.uuid4()), "parentId": parent, "type": kind, "name": name,
                  "state": fields.pop("state", "pending"), "result": fields.pop("result", None), **fields}
        self.result.run.timeline.append(record)
        return record

    # -- environments: checks at stage start ---------------------------------------------------
    def _environment_checks(self, stage: dict, state: dict) -> bool:
        """The checks of every environment the stage's deployment jobs use, before any job runs:
        approvals first, then the Exclusive lock (kept until the stage completes). False: rejected."""
        name = stage["stage"]
        envs = sorted({j["environment"] if isinstance(j["environment"], str) else j["environment"]["name"]
                       for j in stage["jobs"] if "environment" in j})
        checks = state.setdefault("checks", {})
        for env in envs:
            config = self.environments.get(env, {})
            if config.get("approvers") and env not in checks:
                decision = self._environment_approval(stage, env, config, state)
                if decision is None:
                    return False
                checks[env] = decision
        for env in envs:
            if not self.environments.get(env, {}).get("exclusive_lock"):
                continue
            holder = self.locks.get(env)
            me = f"{self.result.run.id}/{name}"
            if holder not in (None, me):
                self.result.lock_waits.append((name, env, holder))
                raise Deferred()
            self.locks[env] = me
        return True

    def _release_locks(self, stage_name: str) -> None:
        me = f"{self.result.run.id}/{stage_name}"
        for env in [e for e, holder in self.locks.items() if holder == me]:
            del self.locks[env]

    def _environment_approval(self, stage: dict, env: str, config: dict, state: dict):
        """An Approvals check: Checkpoint and Checkpoint.Approval records under the stage, the
        approval (steps, approver, time) in the fake's approvals API; the approver fixture answers.
        Azure DevOps lets only the listed approvers act (and, with the option set, not the run's
        requester): anyone else's answer leaves it pending, which here fails the check."""
        name = stage["stage"]
        pending = state.get("approval")
        if pending is None:
            stage_id = self.stage_records[name]["id"]
            checkpoint = self._record(stage_id, "Checkpoint", "Checkpoint", state="inProgress")
            approval_id = str(uuid.uuid4())
            record = self._record(checkpoint["id"], "Checkpoint.Approval", "Checkpoint.Approval", id=approval_id,
                                  state="inProgress")
            self.ado.approvals[approval_id] = {"id": approval_id, "status": "pending", "steps": [],
                                               "instructions": config.get("instructions", ""),
                                               "createdOn": _iso(self.clock())}
            pending = state["approval"] = {"id": approval_id, "record": record, "checkpoint": checkpoint, "calls": 0}
        validation = Validation(name, f"environment {env}", config.get("instructions", ""),
                                {"approvers": ",".join(config["approvers"])}, kind="environment")
        decision = self.approver(validation, pending["calls"])
        pending["calls"] += 1
        if decision.status == "defer":
            raise Deferred()
        validation.decision = decision
        self.result.validations.append(validation)
        allowed = {a.lower() for a in config["approvers"]}
        who = decision.approver.lower()
        refused = who not in allowed or (not config.get("allow_own_runs", False)
                                         and who == self.trigger.requested_for.lower())
        status = "rejected" if refused or decision.status != "approved" else "approved"
        now = _iso(self.clock())
        approval = self.ado.approvals[pending["id"]]
        approval.update(status=status, lastModifiedOn=now, steps=[{
            "status": status, "assignedApprover": {"displayName": config.get("group", config["approvers"][0])},
            "actualApprover": {"uniqueName": decision.approver, "displayName": decision.approver.split("@")[0]},
            "comment": decision.comment, "lastModifiedOn": now}])
        result = "Succeeded" if status == "approved" else "Failed"
        self._finish(pending["record"], result)
        self._finish(pending["checkpoint"], result)
        if refused:
            self.result.logs.append(StepLog(name, f"environment {env}", "Approvals check", "Failed",
                                            f"{decision.approver} may not approve: not an approver of {env}, or "
                                            "the run's requester"))
        return decision if status == "approved" else None

    def _finish(self, record: dict, result: str) -> None:
        record["finishTime"] = _iso(self.clock())
        record["state"] = "completed"
        record["result"] = {"Succeeded": "succeeded", "SucceededWithIssues": "succeededWithIssues",
                            "Failed": "failed", "Skipped": "skipped", "Canceled": "canceled"}[result]


# -- task fakes --------------------------------------------------------------------------------------

def triggers(pipeline: dict, trigger: Trigger) -> bool:
    """Whether the push (`trigger:`) or the pull request (`pr:`, by target branch) starts a run; a
    pattern ending in * matches a prefix. (Path filters are not emulated: the tests change
    included paths.) On Azure Repos a PR run comes from the branch policy, not from `pr:`."""
    block = pipeline.get("pr" if trigger.reason == "PullRequest" else "trigger")
    if block is None:
        return True
    if block == "none":
        return False
    includes = block.get("branches", {}).get("include", []) if isinstance(block, dict) else block
    branch = trigger.target_branch if trigger.reason == "PullRequest" else trigger.branch
    name = branch.removeprefix("refs/heads/")
    return any(fnmatch.fnmatch(name, pattern.removeprefix("refs/heads/")) for pattern in includes)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def ps_truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "y", "on")


def _flatten(outputs: dict, depth: int) -> dict:
    """{step: {var: v}} -> {"step.var": v} (depth 1); {job: {step: {var: v}}} -> {"job.step.var": v}."""
    flat = {}
    for key, value in outputs.items():
        if depth > 1:
            flat.update({f"{key}.{k}": v for k, v in _flatten(value, depth - 1).items()})
        else:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
    return flat


def _text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _job_name(job: dict) -> str:
    return job.get("job") or job.get("deployment")


def _variables(block, groups: dict) -> dict:
    """Variables of a pipeline/stage/job block: a mapping, or a list of {name, value} / {group}."""
    if not block:
        return {}
    if isinstance(block, dict):
        return {k: str(v) for k, v in block.items()}
    values = {}
    for item in block:
        if "group" in item:
            if item["group"] not in groups:
                raise AssertionError(f"variable group {item['group']!r} is not defined in the project")
            values.update(groups[item["group"]])
        elif "name" in item:
            values[item["name"]] = str(item.get("value", ""))
    return values


def _use_python(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """UsePythonVersion@0: the tool cache's Python of that version first on PATH (here: the interpreter
    of the venv `make setup` is linked to; a different version fails, as the agent would not have it)."""
    wanted = inputs["versionSpec"]
    actual = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted != actual:
        raise StepFailed(f"Python {wanted} is not in the tool cache (emulation has {actual})")
    tools = runtime["agent"]["workspace"] / "_temp" / "python-tool"
    tools.mkdir(parents=True, exist_ok=True)
    base = Path(sys.base_prefix) / "bin" / f"python{actual}"
    for alias in ("python", "python3"):
        if not (tools / alias).exists():
            (tools / alias).symlink_to(base)
    runtime["agent"]["path"].insert(0, str(tools))
    return f"using {base}"


def _cache(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """Cache@2: a cache miss every time (nothing is restored or saved); the key and path are recorded
    so the test can check what would be cached."""
    agent.result.cache_steps.append({"stage": stage["stage"], "job": _job_name(job), **inputs})
    return "cache miss (emulation)"


def _azure_cli(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """AzureCLI@2: signs in with the service connection (workload identity federation) before the
    script - here: writes the sign-in the `az` fake reads into a fresh AZURE_CONFIG_DIR - runs the
    bash script, then signs out. No service principal secret is ever put in the environment."""
    connection = inputs.get("azureSubscription", "")
    if connection not in agent.service_connections:
        raise StepFailed(f"service connection {connection!r} does not exist or is not authorized")
    if inputs.get("scriptType") != "bash" or inputs.get("scriptLocation") != "inlineScript":
        raise StepFailed("the emulation runs scriptType bash with an inline script only")
    if ps_truthy(inputs.get("addSpnToEnvironment")):
        raise StepFailed("addSpnToEnvironment would expose the service principal")
    agent.result.azure_cli_steps.append({"stage": stage["stage"], "job": _job_name(job),
                                         "step": step.get("displayName"), **inputs})
    config = runtime["agent"]["workspace"] / "_temp" / f"azcli-{uuid.uuid4().hex[:8]}"
    config.mkdir(parents=True)
    (config / "login.json").write_text(json.dumps(agent.service_connections[connection]))
    try:
        return agent._shell(step["inputs"]["inlineScript"], step, runtime, {"AZURE_CONFIG_DIR": str(config)})
    finally:
        (config / "login.json").unlink()


def _publish(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """PublishPipelineArtifact@1: the folder is stored under the run; a name that exists is an error."""
    name = inputs.get("artifact") or inputs.get("artifactName")
    source = Path(inputs.get("targetPath") or inputs.get("path"))
    if not name or MACRO.search(name):
        raise StepFailed(f"artifact name {name!r} is empty or not resolved")
    if name in agent.result.run.artifacts:
        raise StepFailed(f"Artifact {name} already exists for build {agent.result.run.id}.")
    if not source.exists():
        raise StepFailed(f"Path does not exist: {source}")
    stored = agent.artifacts / str(agent.result.run.id) / name
    if source.is_dir():
        shutil.copytree(source, stored)
    else:
        stored.mkdir(parents=True)
        shutil.copy2(source, stored)
    agent.result.run.artifacts[name] = stored
    return f"published {name}"


def _download(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """DownloadPipelineArtifact@2: `current` run, or a `specific` run of this project and definition
    (`buildVersionToDownload: specific` with pipelineId, or `latest` honouring tags and the
    allowPartiallySucceededBuilds / allowFailedBuilds filters)."""
    name = inputs.get("artifactName") or inputs.get("artifact")
    target = Path(inputs.get("targetPath") or inputs.get("path") or runtime["variables"]["Pipeline.Workspace"])
    if inputs.get("buildType", "current") == "current":
        run = agent.result.run
    else:
        if inputs.get("project") not in (PROJECT_ID, PROJECT) or \
                (inputs.get("definition") or inputs.get("pipeline")) != DEFINITION_ID:
            raise StepFailed("specific download from another project or pipeline")
        version = inputs.get("buildVersionToDownload", "latest")
        if version == "specific":
            run = agent.ado.runs.get(int(inputs.get("pipelineId") or inputs.get("runId") or 0))
        else:
            allowed = {"succeeded"} | ({"partiallySucceeded"} if ps_truthy(inputs.get("allowPartiallySucceededBuilds"))
                                       else set()) | ({"failed"} if ps_truthy(inputs.get("allowFailedBuilds")) else set())
            tags = [t for t in (inputs.get("tags") or "").split(",") if t]
            runs = sorted((r for r in agent.ado.runs.values() if r.status == "completed" and r.result in allowed
                           and all(t in r.tags for t in tags)), key=lambda r: r.finished)
            run = runs[-1] if runs else None
        if run is None:
            raise StepFailed(f"no run matches {inputs}")
    source = run.artifacts.get(name or "")
    if source is None:
        raise StepFailed(f"Artifact {name} was not found for build {run.id}.")
    shutil.copytree(source, target, dirs_exist_ok=True)
    return f"downloaded {name} from run {run.id}"


def _test_results(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """PublishTestResults@2: JUnit files by glob; missing files or failed tests fail the task when asked."""
    pattern = inputs["testResultsFiles"]
    root = Path(inputs.get("searchFolder") or runtime["variables"]["System.DefaultWorkingDirectory"])
    files = [Path(pattern)] if Path(pattern).is_absolute() and Path(pattern).exists() else \
        [p for p in root.rglob("*") if fnmatch.fnmatch(str(p), pattern)]
    if not files:
        if ps_truthy(inputs.get("failTaskOnMissingResultsFile")):
            raise StepFailed(f"no test result files match {pattern}")
        return "no test result files"
    failures = sum(len(ET.parse(f).getroot().findall(".//failure")) + len(ET.parse(f).getroot().findall(".//error"))
                   for f in files)
    if failures and ps_truthy(inputs.get("failTaskOnFailedTests")):
        raise StepFailed(f"{failures} failed test(s) in {', '.join(map(str, files))}")
    return f"{len(files)} result file(s), {failures} failure(s)"


def _manual_validation(agent: Agent, stage, job, step, inputs, runtime, record) -> str:
    """ManualValidation@0/@1: only in an agentless job; the approver fixture answers with the
    instructions as Azure DevOps shows them. v1 enforces `approvers` and, unless
    allowApproversToApproveTheirOwnRuns, refuses the run's own author; v0 lets anyone with queue
    permission answer."""
    if not runtime["agent"]["server"]:
        raise StepFailed("ManualValidation runs only in an agentless job (pool: server)")
    if "notifyUsers" not in (step.get("inputs") or {}):
        raise StepFailed("notifyUsers is required")
    version = step["task"].split("@")[1]
    calls = runtime.setdefault("validation_calls", 0)
    validation = Validation(stage["stage"], _job_name(job), inputs.get("instructions", ""), inputs)
    decision = agent.approver(validation, calls)
    runtime["validation_calls"] = calls + 1
    if decision.status == "defer":
        raise Deferred()
    validation.decision = decision
    agent.result.validations.append(validation)
    if version == "1":
        approvers = {a.strip().lower() for a in inputs.get("approvers", "").split(",") if a.strip()}
        if approvers and decision.approver.lower() not in approvers:
            raise StepFailed(f"{decision.approver} is not one of the approvers {sorted(approvers)}")
        own = decision.approver.lower() == agent.trigger.requested_for.lower()
        if own and not ps_truthy(inputs.get("allowApproversToApproveTheirOwnRuns", "true")):
            raise StepFailed(f"{decision.approver} may not approve a run they triggered")
    if decision.status != "approved":
        raise StepFailed(f"rejected by {decision.approver}: {decision.comment}")
    return f"approved by {decision.approver}"


TASKS = {
    "usepythonversion": _use_python,
    "cache": _cache,
    "azurecli": _azure_cli,
    "publishpipelineartifact": _publish,
    "downloadpipelineartifact": _download,
    "publishtestresults": _test_results,
    "manualvalidation": _manual_validation,
}
