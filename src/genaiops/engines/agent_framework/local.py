"""Batch runs in a worker process of the engine's own interpreter (`runtime/genaiops_af_runtime`).

One process per batch runs every member (variant) and line with asyncio, `worker_count` lines
of a member at a time; starting it costs about half a second (importing agent-framework), so a
batch of several variants pays it once. The job file holds nothing secret; the connections,
keys included, are written to the worker's stdin. Progress arrives on its stdout (`done N`).

The worker is contained like promptflow's (`genaiops.execution.procs`: subreaper, parent-death signal, owner
tag, private TMPDIR): when it exits, times out (`BatchJob.deadline_sec`), is stopped (SIGSTOP) or
the command is interrupted, it and everything the app started are killed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genaiops.engines.agent_framework.environment import python_path, require_ready, runtime_env
from genaiops.engines.agent_framework.staging import batch_plan
from genaiops.engines.base import BatchJob, BatchResult, ProgressCallback
from genaiops.engines.childproc import run_batch_process
from genaiops.engines.processenv import passed_values

ENV_ATTEMPTS = "GENAIOPS_LLM_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_LLM_BACKOFF_SEC"
QUIET_ENV = {"AGENT_FRAMEWORK_USER_AGENT_DISABLED": "true", "PYTHONUNBUFFERED": "1"}


def retries_of(job: BatchJob) -> dict[str, Any]:
    env = job.environment
    return {"max_attempts": int(env.get(ENV_ATTEMPTS, 5)), "backoff_sec": float(env.get(ENV_BACKOFF, 0.5))}


def worker_job(job: BatchJob) -> dict[str, Any]:
    if job.run:
        raise ValueError("the agent_framework engine cannot link runs (linkable_run is False)")
    plan = batch_plan(job.flow, job.init)
    return {"name": job.name, **plan, "data": job.data, "column_mapping": job.column_mapping,
            "worker_count": job.worker_count, "line_timeout_sec": job.line_timeout_sec,
            "retries": retries_of(job)}


class LocalRunner:
    def __init__(self, connections: Callable[[], list[dict[str, Any]]]):
        self._connections = connections  # the prepared connections, secrets included

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        python = python_path()
        require_ready()
        plan = worker_job(job)
        declared = {k: str(v) for k, v in job.environment_variables.items()
                    if "${" not in str(v)}  # `${conn.key}` references are promptflow's
        env = {**runtime_env(), **passed_values(job.passed_variables), **declared,
               **job.environment, **QUIET_ENV}
        return run_batch_process([str(python), "-m", "genaiops_af_runtime.batch"], plan, env,
                                 self._connections(), progress, "agent_framework", job.deadline_sec())
