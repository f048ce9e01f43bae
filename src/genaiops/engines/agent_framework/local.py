"""Batch runs in a worker process of the engine's own interpreter (`runtime/genaiops_af_runtime`).

One process per batch runs every member (variant) and line with asyncio, `worker_count` lines
of a member at a time; starting it costs about half a second (importing agent-framework), so a
batch of several variants pays it once. The job file holds nothing secret; the connections,
keys included, are written to the worker's stdin. Progress arrives on its stdout (`done N`).

The worker is contained like promptflow's (`genaiops.procs`: subreaper, parent-death signal, owner
tag, private TMPDIR): when it exits, times out (`BatchJob.deadline_sec`), is stopped (SIGSTOP) or
the command is interrupted, it and everything the app started are killed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from genaiops import procs
from genaiops.engines.agent_framework.environment import python_path, require_ready, runtime_env
from genaiops.engines.agent_framework.staging import batch_plan
from genaiops.engines.base import BatchJob, BatchResult, LineResult, MemberResult, ProgressCallback
from genaiops.engines.processenv import passed_values, sandboxed
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.sweep import owner_tag

ENV_ATTEMPTS = "GENAIOPS_LLM_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_LLM_BACKOFF_SEC"
QUIET_ENV = {"AGENT_FRAMEWORK_USER_AGENT_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
LOG_TAIL_CHARS = 1500
WAIT_SECONDS = 0.1


def retries_of(job: BatchJob) -> dict:
    env = job.environment
    return {"max_attempts": int(env.get(ENV_ATTEMPTS, 5)), "backoff_sec": float(env.get(ENV_BACKOFF, 0.5))}


def worker_job(job: BatchJob) -> dict:
    if job.run:
        raise ValueError("the agent_framework engine cannot link runs (linkable_run is False)")
    plan = batch_plan(job.flow, job.init)
    return {"name": job.name, **plan, "data": job.data, "column_mapping": job.column_mapping,
            "worker_count": job.worker_count, "line_timeout_sec": job.line_timeout_sec,
            "retries": retries_of(job)}


class LocalRunner:
    def __init__(self, connections: Callable[[], list[dict]]):
        self._connections = connections  # the prepared connections, secrets included

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        python = python_path()
        require_ready()
        plan = worker_job(job)
        members = max(1, len(plan["members"]))
        with tempfile.TemporaryDirectory(prefix=f"genaiops-af-{owner_tag()}-") as tmp:
            job_file, result_file, log_file = (Path(tmp) / n for n in ("job.json", "result.json",
                                                                        "worker.log"))
            atomic_write_json(job_file, plan)
            tag = procs.new_tag()
            private_tmp = Path(tmp) / "tmp"  # the app's temp files go with this folder
            private_tmp.mkdir()
            declared = {k: str(v) for k, v in job.environment_variables.items()
                        if "${" not in str(v)}  # `${conn.key}` references are promptflow's
            env = {**runtime_env(), **passed_values(job.passed_variables), **declared,
                   **job.environment, **QUIET_ENV, **procs.child_env(tag), "TMPDIR": str(private_tmp)}
            with log_file.open("wb") as log:
                process = procs.spawn(  # the trust folder hidden from the app
                    sandboxed([str(python), "-m", "genaiops_af_runtime.batch", str(job_file),
                               str(result_file)]),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                    start_new_session=True)  # our own group: Ctrl-C reaches us, we stop it cleanly
                try:
                    failure = _wait(process, self._connections(), job.deadline_sec(),
                                    lambda done: progress(done // members) if progress else None)
                finally:  # ended, given up or interrupted: nothing the app started outlives it
                    procs.end(process, tag)
                    process.stdout.close()
            if failure:
                return BatchResult(job.name, "failed", 0.0, [], error=f"{failure}: the run was stopped",
                                   crashed=True)
            if not result_file.is_file():
                tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
                return BatchResult(job.name, "failed", 0.0, [],
                                   error=f"agent_framework worker exited with code "
                                         f"{process.returncode}: {tail}")
            data = json.loads(result_file.read_text(encoding="utf-8"))
        return BatchResult(
            name=data["name"], status=data["status"], duration_s=data["duration_s"],
            members=[MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                     for m in data["members"]],
            error=data.get("error"))


def _wait(process: subprocess.Popen, connections: list[dict], limit: float, progress) -> str | None:
    """Feed the worker its connections and wait for it to exit, reporting `done N` lines; why it
    was given up (past `limit` seconds, or stopped), or None. stdout is read by a thread: a
    process the app started may hold it open after the worker exits."""
    done = [0]

    def read() -> None:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("done "):
                done[0] = int(line.split()[1])

    for target, args in ((_feed, (process, connections)), (read, ())):
        threading.Thread(target=target, args=args, daemon=True).start()
    deadline, reported = time.monotonic() + limit, -1
    halt = procs.StopWatch(process.pid)
    while True:
        try:
            process.wait(timeout=WAIT_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if done[0] != reported:
            reported = done[0]
            progress(reported)
        if time.monotonic() > deadline:
            return (f"the run did not finish within {limit:g} s (runtime.batch_timeout_sec, or every "
                    "line using its runtime.line_timeout_sec)")
        stopped = halt.check()
        if stopped:
            return stopped
    progress(done[0])
    return None


def _feed(process: subprocess.Popen, connections: list[dict]) -> None:
    try:
        process.stdin.write(json.dumps(connections).encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the worker died early: its exit code and log say why
