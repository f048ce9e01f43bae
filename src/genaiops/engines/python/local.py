"""Batch runs of a Python flow in a worker process of this interpreter
(`python -m genaiops_pyflow.batch`, the runtime on its path): the leader of its own process group,
which forks the line workers (`runtime/genaiops_pyflow/batch.py`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaiops.engines.base import BatchJob, BatchResult, ProgressCallback
from genaiops.engines.childproc import run_batch_process
from genaiops.engines.processenv import engine_environment, home_environment, passed_values
from genaiops.engines.python.staging import batch_plan

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
ENV_ATTEMPTS = "GENAIOPS_LLM_MAX_ATTEMPTS"


class LocalRunner:
    def __init__(self, connections: Callable[[], list[dict[str, Any]]]):
        self._connections = connections  # the prepared connections, secrets included

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        if job.run:
            raise ValueError("the python engine cannot link runs (linkable_run is False)")
        plan = {"name": job.name, **batch_plan(job.flow, job.init), "data": job.data,
                "column_mapping": job.column_mapping, "worker_count": job.worker_count,
                "line_timeout_sec": job.line_timeout_sec}
        path = os.pathsep.join(filter(None, (str(RUNTIME_DIR), os.environ.get("PYTHONPATH"))))
        # the config's environment_variables as written (a `${connection.key}` reference is the
        # promptflow engine's feature: the flow reads the connection through openai_client)
        declared = {k: str(v) for k, v in job.environment_variables.items() if "${" not in str(v)}
        # the allow-listed environment (no audit key, no credential the flow was not given)
        env = {**engine_environment(home_environment()), **passed_values(job.passed_variables),
               **declared, **job.environment, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        return run_batch_process([sys.executable, "-m", "genaiops_pyflow.batch"], plan, env,
                                 self._connections(), progress, "python", job.deadline_sec())
