"""Local runner: batch jobs run in warm genaiops worker processes on this machine.

Importing promptflow costs ~1.5-3 s of CPU, so `prewarm(n)` starts workers that import it (and
start the forkserver that makes each batch run's start-up cheap, see `fastbatch`) while the
orchestrator is still planning. A worker runs one job at a time and then waits for the next, so
the workers of one command serve all its phases: connections, experiment batches, evaluations.
The job carries its environment (worker count, timeouts, retry policy), which the worker applies
for that job only. `close()` ends every worker and all it started (`genaiops.execution.procs`).

A run ends within its deadline (`BatchJob.deadline_sec`) whatever its flow does: past it, or when
a process of the worker's tree stays stopped (SIGSTOP), the worker and its tree are killed and the
run fails. Each worker has a private TMPDIR inside the runner's temp folder (multiprocessing's
`pymp-*` folders, a flow's temp files), removed with it; that folder carries the orchestrator's
owner tag, so the next command removes it if the orchestrator was killed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genaiops.engines.base import (
    BatchJob,
    BatchResult,
    ConnectionSettings,
    LineResult,
    MemberResult,
    ProgressCallback,
)
from genaiops.engines.processenv import engine_environment, passed_values, sandboxed
from genaiops.engines.promptflow.env import (
    engine_home_environment,
    prepare_promptflow,
    promptflow_home,
)
from genaiops.engines.promptflow.results import count_finished_lines
from genaiops.engines.promptflow.retry_policy import BOOTSTRAP_DIR, ENV_ATTEMPTS
from genaiops.engines.promptflow.rundirs import lock_down, scrub
from genaiops.engines.promptflow.worker import idle_limit
from genaiops.errors import GenaiopsError
from genaiops.execution import procs
from genaiops.workspace.files import atomic_write_json, socket_safe_temp_base
from genaiops.workspace.sweep import owner_tag

RESULT_POLL_SECONDS = 0.05
PROGRESS_SECONDS = 0.3
MAX_TMPDIR_CHARS = 70  # multiprocessing's socket path inside it must fit AF_UNIX's 108 bytes

# Read when promptflow is imported, so set when a worker starts. Token counts per node are
# recorded only with tracing on (no trace service: pfenv sets PF_TRACING_SKIP_LOCAL_SETUP).
WORKER_STATIC_ENV = {"PF_DISABLE_TRACING": "false"}


def worker_environment() -> dict[str, Any]:
    """A worker's environment: the allow-listed one (`engines.processenv`: no audit key, no
    credential it was not given), pointed at the command's private promptflow home."""
    env = engine_environment({**WORKER_STATIC_ENV, **engine_home_environment()})
    env.pop("PF_HOME_DIRECTORY", None)  # the store is the private HOME's, never a shared one
    return env


def job_environment(job: BatchJob) -> dict[str, Any]:
    """Environment a job applies in its (possibly warm) worker before promptflow runs it."""
    env = {**job.environment,
           "PF_WORKER_COUNT": str(job.worker_count),
           "PF_LINE_TIMEOUT_SEC": str(job.line_timeout_sec)}
    if ENV_ATTEMPTS in env:  # line workers started by spawn (not our forkserver): bootstrap them
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BOOTSTRAP_DIR, os.environ.get("PYTHONPATH")]))
    return env


class _Worker:
    """One worker process, leader of its own process group and subreaper of its tree: promptflow's
    manager and line processes (and the worker's forkserver) are in that group, and whatever a
    flow starts stays in its tree or carries its owner tag (`genaiops.execution.procs`)."""

    def __init__(self, folder: Path, forkserver: bool):
        self.folder = folder
        self.log_path = folder / "worker.log"
        self._log = open(self.log_path, "wb")
        self._commands = 0
        self.died_log = ""  # what the worker wrote before it died in a request
        self.failure = ""  # why the runner stopped it in a request (deadline, stopped process)
        self.idle_since = time.monotonic()
        self.tag = procs.new_tag()
        env = {**worker_environment(), **procs.child_env(self.tag)}
        private_tmp = folder / "tmp"
        if len(str(private_tmp)) <= MAX_TMPDIR_CHARS:
            private_tmp.mkdir()
            env["TMPDIR"] = str(private_tmp)
        command = [sys.executable, "-m", "genaiops.engines.promptflow.worker", "--serve"]
        self.process = procs.spawn(
            sandboxed(command + (["--forkserver"] if forkserver else [])),  # trust folder hidden
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # our own group: Ctrl-C reaches us, we stop it cleanly

    @property
    def alive(self) -> bool:
        return not self.exited()

    def request(self, command: dict[str, Any], progress: Callable[[], None] | None = None,
                deadline: float | None = None) -> dict[str, Any] | None:
        """Send one command and wait for its result file; None when the worker died first, or
        was given up (`failure` says why): past `deadline` (monotonic), or a process of its tree
        stopped (`procs.StopWatch`); `progress()` is called every PROGRESS_SECONDS."""
        self._commands += 1
        result = self.folder / f"result-{self._commands}.json"
        log_start = self.log_path.stat().st_size
        stdin = self.process.stdin
        assert stdin is not None  # spawned with stdin=PIPE
        try:
            stdin.write((json.dumps({**command, "result": str(result)}) + "\n").encode())
            stdin.flush()
        except BrokenPipeError:  # it stopped (idle timeout, killed) before it read the command
            self.process.wait()
        next_progress = 0.0
        halt = procs.StopWatch(self.process.pid)
        while not result.is_file():
            if not self.alive:
                self.died_log = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                return None
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self.failure = "timed out"
                return None
            self.failure = halt.check() or ""
            if self.failure:
                return None
            if progress is not None and time.monotonic() >= next_progress:
                progress()
                next_progress = time.monotonic() + PROGRESS_SECONDS
            time.sleep(RESULT_POLL_SECONDS)
        data = json.loads(result.read_text(encoding="utf-8"))
        result.unlink()
        self.idle_since = time.monotonic()
        return data

    def exited(self) -> bool:
        """Whether the worker exited, without reaping it: while it is unreaped its pid, and so its
        process group's id, cannot be taken by another process."""
        if self.process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def finish(self) -> int:
        """Kill whatever is left of the worker's tree, group and tag (its results are on disk),
        reap the worker (only now: see `exited`), close its pipe and log; its exit code. Once
        reaped, its group id may belong to another process: a second call signals nothing."""
        if self.process.returncode is not None:
            return self.process.returncode
        code = procs.end(self.process, self.tag)
        for stream in (self.process.stdin, self._log):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return code

    def stop(self, grace_sec: float = 0.0) -> None:
        """End the worker's process group: SIGTERM first when given a grace period (interrupted
        mid-run: promptflow stops its line processes), then SIGKILL, then reap."""
        if grace_sec and not self.exited():
            os.kill(self.process.pid, signal.SIGTERM)  # unreaped: still the worker's pid
            deadline = time.monotonic() + grace_sec
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.finish()


class _Pool:
    """The runner's workers; idle ones wait in a queue. Kept apart from the runner so that a
    runner dropped without `close()` still stops its workers (finalizer, atexit)."""

    def __init__(self):
        # the workers' TMPDIRs are inside: short enough for their forkservers' sockets
        self.tmp = tempfile.TemporaryDirectory(prefix=f"genaiops-jobs-{owner_tag()}-",
                                               dir=socket_safe_temp_base())
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()

    def start(self, forkserver: bool = True) -> _Worker:
        prepare_promptflow()  # pf.yaml complete before workers start together (see env)
        with self.lock:
            folder = Path(self.tmp.name) / f"w{len(self.workers) + 1}"
            folder.mkdir()
            worker = _Worker(folder, forkserver)
            self.workers.append(worker)
        return worker

    def checkout(self, forkserver: bool = True) -> _Worker:
        """An idle worker, unless it is about to stop for being idle too long; else a new one."""
        while True:
            try:
                worker = self.idle.get_nowait()
            except queue.Empty:
                return self.start(forkserver)
            if worker.alive and time.monotonic() - worker.idle_since < idle_limit() - 10:
                return worker
            worker.stop()

    def checkin(self, worker: _Worker) -> None:
        if worker.alive:
            self.idle.put(worker)

    def close(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        for worker in workers:
            worker.stop()
        self.tmp.cleanup()


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
        self._pool = _Pool()
        self._finalizer = weakref.finalize(self, self._pool.close)  # also runs at exit

    def prewarm(self, count: int) -> None:
        """Start workers (with their forkservers) until `count` exist."""
        for _ in range(max(0, count - len(self._pool.workers))):
            self._pool.idle.put(self._pool.start())

    def close(self) -> None:
        self._finalizer()

    def prepare_connections(self, connections: list[dict[str, Any]], endpoints: dict[str, str]) -> list[dict[str, Any]]:
        """Create or update connections in the store from a worker (which imports promptflow
        anyway), so the orchestrator never pays for importing it."""
        worker = self._pool.checkout(forkserver=False)
        try:
            data = worker.request({"op": "connections", "connections": connections,
                                   "endpoints": endpoints})
        except BaseException:
            worker.stop()
            raise
        self._pool.checkin(worker)
        if data is None:
            raise GenaiopsError(f"the promptflow worker stopped while saving connections: "
                                f"{worker.died_log[-800:]}")
        if "error" in data:
            raise GenaiopsError(f"could not save connections in the promptflow store: {data['error']}",
                                hint="check that keyrings.alt is installed and HOME is writable")
        return data["records"]

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        worker = self._pool.checkout()
        job_file = worker.folder / f"{job.name}.job.json"
        atomic_write_json(job_file, {**job.as_dict(), "env": job_environment(job)})
        run_dir = promptflow_home() / ".runs" / job.name
        last = [-1]

        def report() -> None:
            done = count_finished_lines(run_dir)
            if done != last[0] and progress is not None:
                progress(done)
                last[0] = done

        limit = job.deadline_sec()
        try:
            data = worker.request({"op": "run", "job": str(job_file),
                                   "passed": passed_values(job.passed_variables)},
                                  report if progress else None, deadline=time.monotonic() + limit)
        except BaseException:  # interrupted: stop the whole worker process group
            worker.stop(grace_sec=10)
            raise
        finally:
            _scrub(job, run_dir)
        if progress:
            progress(count_finished_lines(run_dir))
        if data is None and worker.failure:
            worker.finish()  # nothing of its tree outlives it
            if worker.failure == "timed out":
                why = (f"the run did not finish within {limit:g} s (runtime.batch_timeout_sec, or "
                       f"every line using its runtime.line_timeout_sec): it was stopped")
            else:
                why = f"{worker.failure}: the run was stopped"
            return BatchResult(job.name, "failed", 0.0, [], error=why, crashed=True)
        if data is None:  # killed (out of memory?) before it could report: a failure
            code = worker.finish()  # nothing of its tree outlives it
            return BatchResult(job.name, "failed", 0.0, [], crashed=True,
                               error=f"the worker process {procs.how_it_ended(code)} before the run finished; "
                                     f"its group was stopped. {worker.died_log[-1500:]}".strip())
        self._pool.checkin(worker)
        members = [MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                   for m in data["members"]]
        return BatchResult(name=data["name"], status=data["status"], duration_s=data["duration_s"],
                           members=members, error=data.get("error"), metrics=data.get("metrics") or {},
                           crashed=bool(data.get("crashed")))


def connection_payload(connections: Sequence[ConnectionSettings]) -> list[dict[str, Any]]:
    """The config's connections as the worker receives them (secrets included: pipe only)."""
    from genaiops.engines.promptflow.connections import ConnectionValues

    return [asdict(ConnectionValues.of(c)) for c in connections]
