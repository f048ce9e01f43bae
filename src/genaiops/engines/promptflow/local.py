"""Local runner: each batch job runs promptflow in a worker process on this machine.

Importing promptflow costs ~3 s of CPU, so `prewarm(n)` starts workers that import it while
the orchestrator is still planning and preparing connections; a warm worker then waits for one
job on stdin. The job carries its environment (worker count, timeouts, retry policy), which
the worker applies before the run, so warm workers need not know their job in advance.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genaiops.engines.base import BatchJob, BatchResult, LineResult, MemberResult, ProgressCallback
from genaiops.engines.promptflow.env import promptflow_home
from genaiops.engines.promptflow.results import count_finished_lines
from genaiops.engines.promptflow.retry_policy import BOOTSTRAP_DIR, ENV_ATTEMPTS
from genaiops.engines.promptflow.rundirs import lock_down, scrub
from genaiops.workspace.files import atomic_write_json

POLL_SECONDS = 0.3


# Read when promptflow is imported, so set when a worker starts. Token counts per node are
# recorded only with tracing on (no trace service: pfenv sets PF_TRACING_SKIP_LOCAL_SETUP).
WORKER_STATIC_ENV = {"PF_DISABLE_TRACING": "false"}


def job_environment(job: BatchJob) -> dict:
    """Environment a job applies in its (possibly warm) worker before promptflow runs it."""
    env = {**job.environment,
           "PF_WORKER_COUNT": str(job.worker_count),
           "PF_LINE_TIMEOUT_SEC": str(job.line_timeout_sec)}
    if ENV_ATTEMPTS in env:  # line workers start from a spawned process: bootstrap them
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BOOTSTRAP_DIR, os.environ.get("PYTHONPATH")]))
    return env


class _Worker:
    """One worker process, leader of its own process group: promptflow's manager and line processes
    are in that group, so stopping the group stops all of them, orphans included."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.log_path = folder / "worker.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "genaiops.engines.promptflow.worker", "--serve"],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **WORKER_STATIC_ENV},
            start_new_session=True)  # our own group: Ctrl-C reaches us, we stop it cleanly

    def submit(self, job_file: Path, result_file: Path) -> None:
        self.process.stdin.write(f"{job_file}\t{result_file}\n".encode())
        self.process.stdin.close()

    def exited(self) -> bool:
        """Whether the worker exited, without reaping it: while it is unreaped its pid, and so its
        process group's id, cannot be taken by another process."""
        if self.process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self) -> int:
        """After the worker exited: stop whatever is left of its group, reap it, its exit code."""
        self._signal_group(signal.SIGKILL)
        code = self.process.wait()
        self.close()
        return code

    def stop(self) -> None:
        """Interrupted or unused: SIGTERM the group, SIGKILL it after 10 s, reap."""
        if not self.exited():
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.finish()

    def close(self) -> None:
        self._log.close()


def _death(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _scrub(job: BatchJob, run_dir: Path) -> None:
    """Known secret values out of what promptflow wrote for this run (an endpoint may echo a key)."""
    from genaiops.secrets import known_secrets

    values = known_secrets()
    flow = Path(job.flow)
    lock_down(run_dir)
    scrub(run_dir, values)
    scrub((flow if flow.is_dir() else flow.parent) / ".promptflow", values)


class LocalRunner:
    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="genaiops-jobs-")
        self._warm: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._count = 0

    def _new_worker(self) -> _Worker:
        self._count += 1
        folder = Path(self._tmp.name) / f"w{self._count}"
        folder.mkdir()
        return _Worker(folder)

    def prewarm(self, count: int) -> None:
        for _ in range(count):
            self._warm.put(self._new_worker())

    def close(self) -> None:
        """Stop warm workers that got no job."""
        while True:
            try:
                self._warm.get_nowait().stop()
            except queue.Empty:
                break
        self._tmp.cleanup()

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        try:
            worker = self._warm.get_nowait()
        except queue.Empty:
            worker = self._new_worker()
        job_file, result_file = worker.folder / "job.json", worker.folder / "result.json"
        atomic_write_json(job_file, {**job.as_dict(), "env": job_environment(job)})
        run_dir = promptflow_home() / ".runs" / job.name
        try:
            worker.submit(job_file, result_file)
            last = -1
            while not worker.exited():
                time.sleep(POLL_SECONDS)
                if progress:
                    done = count_finished_lines(run_dir)
                    if done != last:
                        progress(done)
                        last = done
            code = worker.finish()  # nothing of its group outlives it
        except BaseException:  # interrupted: stop the whole worker process group
            worker.stop()
            raise
        finally:
            _scrub(job, run_dir)
        if progress:
            progress(count_finished_lines(run_dir))
        if not result_file.is_file():  # killed (out of memory?) before it could report: a failure
            tail = worker.log_path.read_text(errors="replace")[-1500:]
            return BatchResult(job.name, "failed", 0.0, [], crashed=True,
                               error=f"the worker process {_death(code)} before the run finished; "
                                     f"its group was stopped. {tail}".strip())
        data = json.loads(result_file.read_text(encoding="utf-8"))
        members = [MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                   for m in data["members"]]
        return BatchResult(name=data["name"], status=data["status"], duration_s=data["duration_s"],
                           members=members, error=data.get("error"), metrics=data.get("metrics") or {},
                           crashed=bool(data.get("crashed")))
