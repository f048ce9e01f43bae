"""A batch worker process of an engine's own (agent_framework, python): the leader of a new process
group, fed its connections (secrets included) on stdin so they never touch a file, reporting on
stdout, contained like promptflow's workers (`genaiops.execution.procs`) and ended with everything it started."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from genaiops.engines.base import (
    BatchResult,
    ConnectionSettings,
    Engine,
    FlowReads,
    FlowSpec,
    LineResult,
    MemberResult,
    OwnsRunner,
    ProgressCallback,
    Runner,
    ServingBundle,
    StagedBatch,
    VariantSpec,
)
from genaiops.workspace.files import atomic_write_text


def _feed(process: subprocess.Popen[bytes], payload: bytes) -> None:
    try:
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the worker died early: its exit code and log say why


LOG_TAIL_CHARS = 1500


WAIT_SECONDS = 0.1


def run_batch_process(command: list[str], plan: dict[str, Any], env: dict[str, str], connections: list[dict[str, Any]],
                      progress: ProgressCallback | None, what: str, limit: float) -> BatchResult:
    """One batch in a worker process: `command + [JOB.json, RESULT.json]` reads the plan (never
    secret) and the connections on stdin, prints `done N` per line (over all members) and writes
    the result; a worker that leaves no result is a failed run with the tail of its log.

    The worker is contained (`genaiops.execution.procs`): started from the spawner thread (its parent-death
    signal), carrying an owner tag its descendants inherit, with a private TMPDIR, the trust folder
    hidden (`processenv.sandboxed`); past `limit` seconds, or stopped (SIGSTOP), the run fails
    (crashed); whatever happens, it and everything it started are killed when it ends."""
    from genaiops.engines.processenv import sandboxed
    from genaiops.execution import procs
    from genaiops.workspace.sweep import owner_tag

    members = max(1, len(plan["members"]))
    with tempfile.TemporaryDirectory(prefix=f"genaiops-batch-{owner_tag()}-") as tmp:
        job_file, result_file, log_file = (Path(tmp) / n for n in ("job.json", "result.json",
                                                                    "worker.log"))
        atomic_write_text(job_file, json.dumps(plan))
        tag = procs.new_tag()
        private_tmp = Path(tmp) / "tmp"  # the flow's temp files go with this folder
        private_tmp.mkdir()
        # child_env: the owner tag, and this pid as the parent the worker watches for
        env = {**env, **procs.child_env(tag), "TMPDIR": str(private_tmp)}
        with log_file.open("wb") as log:
            process = procs.spawn(sandboxed([*command, str(job_file), str(result_file)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                  start_new_session=True)  # our own group: Ctrl-C reaches us
            try:
                failure = _wait(process, json.dumps(connections).encode(), limit,
                                lambda done: progress(done // members) if progress else None)
            finally:  # ended, given up or interrupted: nothing the flow started outlives it
                procs.end(process, tag)
                if process.stdout is not None:
                    process.stdout.close()
        if failure:
            return BatchResult(plan["name"], "failed", 0.0, [], error=f"{failure}: the run was stopped",
                               crashed=True)
        if not result_file.is_file():
            tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            return BatchResult(plan["name"], "failed", 0.0, [],
                               error=f"{what} worker exited with code {process.returncode}: {tail}")
        data = json.loads(result_file.read_text(encoding="utf-8"))
    return BatchResult(
        name=data["name"], status=data["status"], duration_s=data["duration_s"],
        members=[MemberResult(suffix=m["suffix"], lines=[LineResult(**line) for line in m["lines"]])
                 for m in data["members"]],
        error=data.get("error"), crashed=bool(data.get("crashed")))


def _wait(process: subprocess.Popen[bytes], payload: bytes, limit: float,
          progress: Callable[[int], None]) -> str | None:
    """Feed the worker and wait for it to exit, reporting `done N` lines; why it was given up
    (past `limit` seconds, or stopped), or None. stdout is read by a thread: a process the flow
    started may hold it open after the worker exits."""
    import time

    from genaiops.execution import procs

    done = [0]

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("done "):
                done[0] = int(line.split()[1])

    threading.Thread(target=_feed, args=(process, payload), daemon=True).start()
    threading.Thread(target=read, daemon=True).start()
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


class HeldConnections:
    """`Engine.prepare_connections` for engines whose workers receive the connections on stdin:
    kept in this process's memory (secrets included) for its runs; nothing is written anywhere."""

    connection_fields = ("organization", "model")
    _connections: list[dict[str, Any]] = []

    def prepare_connections(self, connections: Sequence[ConnectionSettings], endpoints: dict[str, str]) -> list[dict[str, Any]]:
        self._connections = [{"name": c.name, "type": c.type, "endpoint": endpoints[c.name],
                              "api_key": c.api_key, "api_version": c.api_version,
                              **{k: getattr(c, k) for k in self.connection_fields if getattr(c, k)}}
                             for c in connections]
        return [{**c.public(), "endpoint": endpoints[c.name], "simulator": c.uses_simulator,
                 "action": "in memory"} for c in connections]

    def held_connections(self) -> list[dict[str, Any]]:
        return list(self._connections)


class Staging(Protocol):
    """An own-worker engine's staging module: private copies of a flow, to run a batch of
    variants or to serve one."""

    @property
    def MAX_VARIANTS_PER_BATCH(self) -> int: ...  # noqa: N802 - a module constant

    def stage_batch(self, flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch: ...

    def stage_for_serving(self, flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path: ...


class Serving(Protocol):
    """An own-worker engine's serving module: the build context of its serving image."""

    def serving_bundle(self, flow_dir: Path, bundle: Path,
                       connections: list[dict[str, Any]]) -> ServingBundle: ...


class OwnWorkerEngine(HeldConnections, OwnsRunner, Engine):
    """What engines whose batches run in a worker process of their own share (agent_framework,
    python): connections held in memory, the runner made on first use (`make_runner`, given `held_connections`), staging and serving images
    by the engine's `staging` and `serving` modules, no warm workers, runs that live only in the ledger, and the reads of the
    flow folder's Python and YAML files."""

    staging: ClassVar[Staging]
    serving: ClassVar[Serving]

    def __init__(self, backend: str = "local", settings: dict[str, Any] | None = None,
                 runner: Runner | None = None):
        super().__init__(backend, settings, runner)
        self._connections = []  # prepare_connections: kept in memory for this process's runs

    def max_variants_per_batch(self, flow: FlowSpec) -> int:
        return self.staging.MAX_VARIANTS_PER_BATCH

    def stage(self, flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
        return self.staging.stage_batch(flow, variants, dest)

    def stage_for_serving(self, flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
        return self.staging.stage_for_serving(flow, variant, dest)

    def serving_bundle(self, flow_dir: Path, context: Path,
                       connections: list[dict[str, Any]]) -> ServingBundle:
        return self.serving.serving_bundle(flow_dir, context, connections)

    def flow_reads(self, flow: FlowSpec) -> FlowReads:
        """What the flow's Python and YAML files read from the environment. Its connections are
        the config's, handed to the flow by the runtime (their output settings are in every run
        key already), so the flow names none itself."""
        from genaiops.engines.envscan import tree_reads

        reads = tree_reads(flow.root, self.cache_patterns, (".yaml", ".yml"), boundary=flow.boundary)
        return FlowReads(variables=reads.variables, unknown=reads.unknown)

    def prewarm(self, count: int) -> None:
        """Nothing to warm: a worker starts within a second."""

    def linkable_run(self, name: str | None) -> bool:
        """Runs live only in the ledger: evaluations read their outputs from there."""
        return False

    def close(self) -> None:
        """Workers end with their batch; nothing stays running."""
