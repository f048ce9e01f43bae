"""A genaiops worker process: imports promptflow once, then runs batch jobs one after another.

`python -m genaiops.engines.promptflow.worker --serve [--forkserver]` imports promptflow and
waits for commands on stdin, one JSON object a line:

    {"op": "run", "job": JOB_FILE, "result": RESULT_FILE}
    {"op": "connections", "connections": [...], "endpoints": {...}, "result": RESULT_FILE}

and answers each by writing RESULT_FILE atomically. Connection secrets arrive on the pipe and
are written only into promptflow's connection store. `--forkserver` also starts the forkserver
that makes a batch run's start-up cheap (`fastbatch`). `python -m ... worker JOB RESULT` runs one
job and exits.

A process per worker keeps promptflow's fork-based pools away from the orchestrator's threads and
lets the orchestrator stop a run by stopping the process group. The same warm worker serves every
phase of one command (connections, experiment batches, evaluation batches). When stdin closes, or
after `GENAIOPS_WORKER_IDLE_SEC` without a command, or when the orchestrator dies (SIGTERM, the
parent-death signal of `genaiops_reaper.contain_self`), the worker kills every descendant (it is
their subreaper: processes a flow started in a session of their own included) and its whole
process group at once: promptflow's interpreter teardown would take ~1.7 s and its forkserver and
manager processes would otherwise outlive it.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from genaiops.execution.procs import kill_all  # standard library only; see _end_group

IDLE_ENV = "GENAIOPS_WORKER_IDLE_SEC"
DEFAULT_IDLE_SEC = 60.0


_WARM: set[str] = set()


def _import_all(modules: Iterable[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # a tool package that is not installed: the run says so if it matters
            pass


def idle_limit() -> float:
    """How long a warm worker waits for its next job before it stops (the runner knows it too)."""
    try:
        return float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_SEC)
    except ValueError:
        return DEFAULT_IDLE_SEC


def _warm_up(forkserver: bool = False) -> None:
    if "promptflow" in _WARM and (not forkserver or "forkserver" in _WARM):
        return
    import genaiops.engines.promptflow.fastbatch as fastbatch
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()
    importlib.import_module("promptflow.client")  # the expensive part: ~1.5-3 s

    fastbatch.install()
    _WARM.add("promptflow")
    if forkserver and "forkserver" not in _WARM:
        fastbatch.start_forkserver()  # a fork of this process: before any thread of ours starts
        _WARM.add("forkserver")
        # what the first run imports on its way (pandas for the dataset, the LLM tools, openai's
        # resources for tracing: ~1.5 s), loaded while the worker serves its first command
        threading.Thread(target=_import_all, args=(("pandas",) + fastbatch.PRELOAD,),
                         name="preload", daemon=True).start()


_CLIENTS: list[Any] = []  # the process's one PFClient (promptflow ships no type information)


def _client() -> Any:
    if not _CLIENTS:
        from promptflow.client import PFClient  # pyright: ignore[reportMissingTypeStubs]

        _CLIENTS.append(cast(Any, PFClient)())
    return _CLIENTS[0]


CrashHandler = Callable[[str], None]


def run_job(job: dict[str, Any], on_crash: CrashHandler | None = None, passed: dict[str, Any] | None = None) -> dict[str, Any]:
    """One batch run; the job's environment (and `passed`: the variables the flow reads, sent on
    the pipe) applies for its duration only (a warm worker serves jobs with different worker
    counts, retry policies and flows). `on_crash(line)`: see `_watch_for_crashes`."""
    saved = dict(os.environ)
    os.environ.update(passed or {})
    os.environ.update(job.get("env") or {})  # read by promptflow's batch engine at run time
    try:
        return _run(job, on_crash)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(job: dict[str, Any], on_crash: CrashHandler | None = None) -> dict[str, Any]:
    _warm_up()
    from genaiops.engines.promptflow.env import promptflow_home
    from genaiops.engines.promptflow.retry_policy import install_from_env

    install_from_env()  # before pf.run: forked line workers inherit it
    watch = None
    if on_crash is not None:
        watch = _watch_for_crashes(promptflow_home() / ".runs" / job["name"], on_crash)
    try:
        return _batch_run(job)
    finally:
        if watch is not None:
            watch.set()  # this job is over: a warm worker's next job gets its own watch


def _batch_run(job: dict[str, Any]) -> dict[str, Any]:
    from genaiops.engines.promptflow.results import read_members, run_error

    client = _client()
    started = time.monotonic()
    kwargs: dict[str, Any] = {}
    if job.get("init"):
        kwargs["init"] = job["init"]
    if job.get("run"):
        kwargs["run"] = job["run"]
    if job.get("environment_variables"):
        kwargs["environment_variables"] = {k: str(v) for k, v in job["environment_variables"].items()}
    run: Any = client.run(flow=job["flow"], data=job["data"], column_mapping=job["column_mapping"],
                     name=job["name"], stream=False, **kwargs)
    run_dir = Path(run._output_path)
    inputs: dict[int, dict[str, Any]] = {}
    with open(job["data"], encoding="utf-8") as handle:
        for number, line in enumerate(l for l in handle if l.strip()):
            inputs[number] = json.loads(line)
    members = read_members(run_dir, job["member_suffixes"], inputs)
    return {
        "name": job["name"],
        "status": "completed" if run.status == "Completed" else "failed",
        "duration_s": round(time.monotonic() - started, 3),
        "members": [asdict(m) for m in members],
        "error": None if run.status == "Completed" else run_error(run_dir, run.status),
        "run_dir": str(run_dir),
        "metrics": _metrics(client, run),
    }


def _metrics(client: Any, run: Any) -> dict[str, Any]:
    """The run's logged aggregate metrics (`log_metric`, flex `__aggregate__`); {} when none."""
    try:
        return dict(client.get_metrics(run.name) or {})
    except Exception:  # no metrics.json (plain runs) is not an error
        return {}


def _watch_for_crashes(run_dir: Path, on_crash: CrashHandler) -> threading.Event:
    """promptflow replaces a line process that died and carries on, and waits forever for a batch
    (manager) process that died; genaiops does neither: the first such death calls
    `on_crash(what)`, which fails the run and stops this whole process group. Watches until the
    returned event is set."""
    import genaiops.engines.promptflow.fastbatch as fastbatch
    from genaiops.engines.promptflow.results import CrashWatch

    watch = CrashWatch(run_dir)
    done = threading.Event()
    managers = fastbatch.managers_since()

    def poll() -> None:
        while not done.wait(0.25):
            lines = watch.crashed_lines()
            if lines:
                where = f"line {lines[0]}" if lines[0] >= 0 else "a line"
                on_crash(f"a promptflow line process died while running {where}")
                return
            dead = fastbatch.dead_manager(managers)
            if dead and not done.is_set():
                on_crash(f"promptflow's batch process (the parent of its line processes) {dead}")
                return

    threading.Thread(target=poll, name="crash-watch", daemon=True).start()
    return done


def _stop_group_after(result_path: Path, job: dict[str, Any]) -> CrashHandler:
    """The crash handler: write the failed result, then SIGKILL this worker's process group."""

    def crashed(what: str) -> None:
        from genaiops.workspace.files import atomic_write_json

        atomic_write_json(result_path, {
            "name": job["name"], "status": "failed", "crashed": True, "duration_s": 0.0, "members": [],
            "error": f"{what} (killed, e.g. out of memory): the run was stopped and is failed"})
        _end_group()

    return crashed


def prepare_connections(command: dict[str, Any]) -> dict[str, Any]:
    _warm_up()
    from genaiops.engines.promptflow.connections import ConnectionValues, upsert_connections
    from genaiops.secrets import REDACTOR

    values = [ConnectionValues(**c) for c in command["connections"]]
    REDACTOR.add(*(v.api_key for v in values if v.api_key))
    return {"records": upsert_connections(values, command["endpoints"])}


def _failure(exc: Exception, name: str | None = None) -> dict[str, Any]:
    """Reported to the orchestrator, which names the run and the cause."""
    return {"name": name, "status": "failed", "duration_s": 0.0, "members": [],
            "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
            "traceback": traceback.format_exc()[-4000:]}


def handle(command: dict[str, Any]) -> dict[str, Any]:
    if command.get("op") == "connections":
        try:
            return prepare_connections(command)
        except Exception as exc:
            from genaiops.secrets import redact

            return {"error": redact(f"{type(exc).__name__}: {exc}")[:2000]}
    job = json.loads(Path(command["job"]).read_text(encoding="utf-8"))
    try:
        return run_job(job, on_crash=_stop_group_after(Path(command["result"]), job),
                       passed=command.get("passed"))
    except Exception as exc:
        return _failure(exc, job.get("name"))


def _exit_with_parent() -> None:
    """If the orchestrator dies (SIGKILL, CI cancel) stop this run and its line workers too:
    a run nobody will record is wasted LLM calls. The kernel says so (SIGTERM: the parent-death signal);
    where it cannot (not Linux), a thread watches the parent."""
    from genaiops.execution.standalone.genaiops_reaper import contain_self

    signal.signal(signal.SIGTERM, lambda _signal, _frame: _end_group())
    if contain_self(signal.SIGTERM):
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                _end_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _end_group() -> None:
    """Stop this worker and everything it started (forkserver, managers, line processes, and
    whatever a flow started in a session of its own). Runs in a signal handler, so `kill_all` is
    imported with this module: importing it here could wait on an import lock the interrupted main
    thread holds (a killed orchestrator's flow children then outlived it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    kill_all(os.getpid())
    if os.getpgrp() == os.getpid():  # our own group (the orchestrator starts us in a new session)
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(0)


def _next_command(idle_sec: float) -> dict[str, Any] | None:
    """The next command, or None when stdin closed or nothing came for `idle_sec`."""
    ready, _, _ = select.select([sys.stdin], [], [], idle_sec)
    if not ready:
        return None
    line = sys.stdin.readline()
    return json.loads(line) if line.strip() else None


def serve(forkserver: bool) -> None:
    from genaiops.workspace.files import atomic_write_json

    _warm_up(forkserver)
    idle_sec = idle_limit()
    while True:
        command = _next_command(idle_sec)
        if command is None:
            break
        atomic_write_json(Path(command["result"]), handle(command))
    _end_group()


def main(argv: list[str]) -> int:
    from genaiops.engines.promptflow.rundirs import PRIVATE_UMASK
    from genaiops.workspace.files import atomic_write_json

    os.umask(PRIVATE_UMASK)  # run folders, logs, line processes: 0700 folders, 0600 files
    _exit_with_parent()
    if argv and argv[0] == "--serve":
        serve(forkserver="--forkserver" in argv)
        return 0
    job_path, result_path = Path(argv[0]), Path(argv[1])
    atomic_write_json(result_path, handle({"op": "run", "job": str(job_path), "result": str(result_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
