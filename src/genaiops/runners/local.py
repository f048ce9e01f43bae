"""Local runner: each batch job runs promptflow in a worker process on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genaiops.fsutil import atomic_write_json
from genaiops.pfenv import promptflow_home
from genaiops.runners.base import BatchJob, BatchResult, LineResult, MemberResult, ProgressCallback
from genaiops.runners.pf_results import count_finished_lines
from genaiops.runners.retry_policy import BOOTSTRAP_DIR, ENV_ATTEMPTS

POLL_SECONDS = 0.3


class LocalRunner:
    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        with tempfile.TemporaryDirectory(prefix="genaiops-job-") as tmp:
            job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
            log_file = Path(tmp) / "worker.log"
            atomic_write_json(job_file, job.as_dict())
            env = {**os.environ, **job.environment,
                   "PF_WORKER_COUNT": str(job.worker_count),
                   "PF_LINE_TIMEOUT_SEC": str(job.line_timeout_sec),
                   # token counts per node are recorded only with tracing on (no trace service:
                   # pfenv sets PF_TRACING_SKIP_LOCAL_SETUP)
                   "PF_DISABLE_TRACING": "false"}
            if ENV_ATTEMPTS in env:  # line workers start from a spawned process: bootstrap them
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [BOOTSTRAP_DIR, env.get("PYTHONPATH")]))
            run_dir = promptflow_home() / ".runs" / job.name
            with open(log_file, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "genaiops.runners.pf_worker", str(job_file), str(result_file)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                try:
                    last = -1
                    while process.poll() is None:
                        time.sleep(POLL_SECONDS)
                        if progress:
                            done = count_finished_lines(run_dir)
                            if done != last:
                                progress(done)
                                last = done
                except BaseException:  # interrupted: stop the whole worker process group
                    _stop(process)
                    raise
            if progress:
                progress(count_finished_lines(run_dir))
            if not result_file.is_file():
                tail = log_file.read_text(errors="replace")[-1500:]
                return BatchResult(job.name, "failed", 0.0, [],
                                   error=f"worker exited with code {process.returncode}: {tail}")
            data = json.loads(result_file.read_text(encoding="utf-8"))
        members = [MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                   for m in data["members"]]
        return BatchResult(name=data["name"], status=data["status"], duration_s=data["duration_s"],
                           members=members, error=data.get("error"), metrics=data.get("metrics") or {})


def _stop(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
