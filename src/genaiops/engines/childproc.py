"""A batch worker process of an engine's own: the leader of a new process group, fed its
connections (secrets included) on stdin so they never touch a file, reporting on stdout, and
stopped with its whole group when the command is interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genaiops.engines.base import (
    BatchJob,
    BatchResult,
    Engine,
    FlowReads,
    FlowSpec,
    LineResult,
    MemberResult,
    ProgressCallback,
    Runner,
)
from genaiops.workspace.files import atomic_write_text


def run_child(command: list[str], env: dict[str, str], payload: bytes, log_file: Path,
              on_line: Callable[[str], None]) -> int:
    """Run `command` to its end (stderr to `log_file`), every stdout line to `on_line`; its exit code."""
    # the worker stops when this process dies: it watches for a parent other than this pid (taken
    # from its own getppid() it would miss a death that came before its watch started)
    env = {**env, PARENT_ENV: str(os.getpid())}
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log, env=env,
                                   start_new_session=True)  # our own group: Ctrl-C reaches us
        try:
            feeder = threading.Thread(target=_feed, args=(process, payload), daemon=True)
            feeder.start()
            assert process.stdout is not None
            for raw in process.stdout:
                on_line(raw.decode("utf-8", "replace").strip())
            process.wait()
            feeder.join(timeout=5)
        except BaseException:  # interrupted: stop the worker's process group
            stop_group(process)
            raise
    return process.returncode


def _feed(process: subprocess.Popen[bytes], payload: bytes) -> None:
    try:
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the worker died early: its exit code and log say why


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group, SIGKILL when it does not end within 10 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


LOG_TAIL_CHARS = 1500
PARENT_ENV = "GENAIOPS_PARENT_PID"


def run_batch_process(command: list[str], plan: dict[str, Any], env: dict[str, str], connections: list[dict[str, Any]],
                      progress: ProgressCallback | None, what: str) -> BatchResult:
    """One batch in a worker process: `command + [JOB.json, RESULT.json]` reads the plan (never
    secret) and the connections on stdin, prints `done N` per line (over all members) and writes
    the result; a worker that leaves no result is a failed run with the tail of its log."""
    members = max(1, len(plan["members"]))

    def on_line(line: str) -> None:
        if progress and line.startswith("done "):
            progress(int(line.split()[1]) // members)

    with tempfile.TemporaryDirectory(prefix="genaiops-batch-") as tmp:
        job_file, result_file, log_file = (Path(tmp) / n for n in ("job.json", "result.json",
                                                                    "worker.log"))
        atomic_write_text(job_file, json.dumps(plan))
        returncode = run_child([*command, str(job_file), str(result_file)], env,
                               json.dumps(connections).encode(), log_file, on_line)
        if not result_file.is_file():
            tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            return BatchResult(plan["name"], "failed", 0.0, [],
                               error=f"{what} worker exited with code {returncode}: {tail}")
        data = json.loads(result_file.read_text(encoding="utf-8"))
    return BatchResult(
        name=data["name"], status=data["status"], duration_s=data["duration_s"],
        members=[MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                 for m in data["members"]],
        error=data.get("error"), crashed=bool(data.get("crashed")))


class HeldConnections:
    """`Engine.prepare_connections` for engines whose workers receive the connections on stdin:
    kept in this process's memory (secrets included) for its runs; nothing is written anywhere."""

    connection_fields = ("organization", "model")
    _connections: list[dict[str, Any]] = []

    def prepare_connections(self, connections: Sequence[Any], endpoints: dict[str, str]) -> list[dict[str, Any]]:
        self._connections = [{"name": c.name, "type": c.type, "endpoint": endpoints[c.name],
                              "api_key": c.api_key, "api_version": c.api_version,
                              **{k: getattr(c, k) for k in self.connection_fields if getattr(c, k)}}
                             for c in connections]
        return [{**c.public(), "endpoint": endpoints[c.name], "simulator": c.uses_simulator,
                 "action": "in memory"} for c in connections]

    def held_connections(self) -> list[dict[str, Any]]:
        return list(self._connections)


class OwnWorkerEngine(HeldConnections, Engine):
    """What engines whose batches run in a worker process of their own share (agent_framework,
    python): connections held in memory, the runner made on first use, no warm workers, runs
    that live only in the ledger, and the reads of the flow folder's Python and YAML files."""

    def __init__(self, backend: str = "local", settings: dict[str, Any] | None = None,
                 runner: Runner | None = None):
        self.backend = backend
        self.settings = dict(settings or {})
        self._connections = []  # prepare_connections: kept in memory for this process's runs
        self._runner = runner

    def local_runner(self) -> Runner:
        """The engine's local runner, given `self.held_connections`."""
        raise NotImplementedError

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = self.local_runner()
        return self._runner

    def flow_reads(self, flow: FlowSpec) -> FlowReads:
        """What the flow's Python and YAML files read from the environment. Its connections are
        the config's, handed to the flow by the runtime (their output settings are in every run
        key already), so the flow names none itself."""
        from genaiops.envscan import tree_reads  # pyright: ignore[reportUnknownVariableType]

        reads = tree_reads(flow.root, self.cache_patterns, (".yaml", ".yml"))
        return FlowReads(variables=reads.variables, unknown=reads.unknown)

    def prewarm(self, count: int) -> None:
        """Nothing to warm: a worker starts within a second."""

    def run_batch(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        return self.runner.run(job, progress)

    def linkable_run(self, name: str | None) -> bool:
        """Runs live only in the ledger: evaluations read their outputs from there."""
        return False

    def close(self) -> None:
        """Workers end with their batch; nothing stays running."""
