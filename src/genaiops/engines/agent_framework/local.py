"""Batch runs in a worker process of the engine's own interpreter (`runtime/genaiops_af_runtime`).

One process per batch runs every member (variant) and line with asyncio, `worker_count` lines
of a member at a time; starting it costs about half a second (importing agent-framework), so a
batch of several variants pays it once. The job file holds nothing secret; the connections,
keys included, are written to the worker's stdin. Progress arrives on its stdout (`done N`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from genaiops.engines.agent_framework.environment import python_path, require_ready, runtime_env
from genaiops.engines.agent_framework.staging import batch_plan
from genaiops.engines.base import BatchJob, BatchResult, LineResult, MemberResult, ProgressCallback
from genaiops.engines.processenv import passed_values, sandboxed
from genaiops.workspace.files import atomic_write_json

ENV_ATTEMPTS = "GENAIOPS_LLM_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_LLM_BACKOFF_SEC"
QUIET_ENV = {"AGENT_FRAMEWORK_USER_AGENT_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
LOG_TAIL_CHARS = 1500


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
        with tempfile.TemporaryDirectory(prefix="genaiops-af-") as tmp:
            job_file, result_file, log_file = (Path(tmp) / n for n in ("job.json", "result.json",
                                                                        "worker.log"))
            atomic_write_json(job_file, plan)
            declared = {k: str(v) for k, v in job.environment_variables.items()
                        if "${" not in str(v)}  # `${conn.key}` references are promptflow's
            env = {**runtime_env(), **passed_values(job.passed_variables), **declared,
                   **job.environment, **QUIET_ENV}
            with log_file.open("wb") as log:
                process = subprocess.Popen(  # the trust folder hidden from the app
                    sandboxed([str(python), "-m", "genaiops_af_runtime.batch", str(job_file),
                               str(result_file)]),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                    start_new_session=True)  # our own group: Ctrl-C reaches us, we stop it cleanly
                try:
                    feeder = threading.Thread(target=_feed, args=(process, self._connections()),
                                              daemon=True)
                    feeder.start()
                    for raw in process.stdout:
                        line = raw.decode("utf-8", "replace").strip()
                        if progress and line.startswith("done "):
                            progress(int(line.split()[1]) // members)
                    process.wait()
                    feeder.join(timeout=5)
                except BaseException:  # interrupted: stop the worker's process group
                    _stop(process)
                    raise
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


def _feed(process: subprocess.Popen, connections: list[dict]) -> None:
    try:
        process.stdin.write(json.dumps(connections).encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the worker died early: its exit code and log say why


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
