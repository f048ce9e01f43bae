"""Runs one promptflow batch job in its own process.

`python -m genaiops.engines.promptflow.worker JOB RESULT` runs a job file; `--serve` imports promptflow
first and then reads one "JOB<tab>RESULT" line from stdin (a warm worker, see `local.py`).

A process per batch keeps promptflow's fork-based worker pool away from the orchestrator's
threads (promptflow cannot fork safely from a threaded parent) and lets the orchestrator stop
a run by stopping the process. The result is written atomically as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path


def _warm_up() -> None:
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()
    import promptflow.client  # noqa: F401  (the expensive part: ~3 s)


def run_job(job: dict, on_crash=None) -> dict:
    import os

    os.environ.update(job.get("env") or {})  # read by promptflow's batch engine at run time
    _warm_up()
    from promptflow.client import PFClient

    from genaiops.engines.promptflow.env import promptflow_home
    from genaiops.engines.promptflow.retry_policy import install_from_env

    install_from_env()  # before pf.run: forked line workers inherit it

    from genaiops.engines.promptflow.results import read_members

    client = PFClient()
    if on_crash is not None:
        _watch_for_crashes(promptflow_home() / ".runs" / job["name"], on_crash)
    started = time.monotonic()
    kwargs = {}
    if job.get("init"):
        kwargs["init"] = job["init"]
    if job.get("run"):
        kwargs["run"] = job["run"]
    run = client.run(flow=job["flow"], data=job["data"], column_mapping=job["column_mapping"],
                     name=job["name"], stream=False, **kwargs)
    run_dir = Path(run._output_path)
    inputs = {}
    with open(job["data"], encoding="utf-8") as handle:
        for number, line in enumerate(l for l in handle if l.strip()):
            inputs[number] = json.loads(line)
    members = read_members(run_dir, job["member_suffixes"], inputs)
    return {
        "name": job["name"],
        "status": "completed" if run.status == "Completed" else "failed",
        "duration_s": round(time.monotonic() - started, 3),
        "members": [asdict(m) for m in members],
        "error": None if run.status == "Completed" else f"promptflow run status {run.status}",
        "run_dir": str(run_dir),
        "metrics": _metrics(client, run),
    }


def _metrics(client, run) -> dict:
    """The run's logged aggregate metrics (`log_metric`, flex `__aggregate__`); {} when none."""
    try:
        return dict(client.get_metrics(run.name) or {})
    except Exception:  # no metrics.json (plain runs) is not an error
        return {}


def _watch_for_crashes(run_dir: Path, on_crash) -> None:
    """promptflow replaces a line process that died and carries on; genaiops does not: the first
    such death calls `on_crash(line)`, which fails the run and stops this whole process group."""
    import threading

    from genaiops.engines.promptflow.results import CrashWatch

    watch = CrashWatch(run_dir)

    def poll() -> None:
        while True:
            time.sleep(0.5)
            lines = watch.crashed_lines()
            if lines:
                on_crash(lines[0])
                return

    threading.Thread(target=poll, name="crash-watch", daemon=True).start()


def _stop_group_after(result_path: Path, job: dict):
    """The crash handler: write the failed result, then SIGKILL this worker's process group."""

    def crashed(line: int) -> None:
        import os
        import signal

        from genaiops.workspace.files import atomic_write_json

        where = f"line {line}" if line >= 0 else "a line"
        atomic_write_json(result_path, {
            "name": job["name"], "status": "failed", "crashed": True, "duration_s": 0.0, "members": [],
            "error": f"a promptflow line process died while running {where} (killed, e.g. out of "
                     "memory): the run was stopped and is failed"})
        os.killpg(os.getpgrp(), signal.SIGKILL)

    return crashed


def _exit_with_parent() -> None:
    """If the orchestrator dies (SIGKILL, CI cancel) stop this run and its line workers too:
    a run nobody will record is wasted LLM calls."""
    import os
    import signal
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    import os

    from genaiops.engines.promptflow.rundirs import PRIVATE_UMASK
    from genaiops.workspace.files import atomic_write_json

    os.umask(PRIVATE_UMASK)  # run folders, logs, line processes: 0700 folders, 0600 files
    _exit_with_parent()
    if argv == ["--serve"]:
        _warm_up()
        line = sys.stdin.readline().strip()
        if not line:  # the orchestrator needed no more workers
            return 0
        argv = line.split("\t")
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    try:
        result = run_job(job, on_crash=_stop_group_after(result_path, job))
    except Exception as exc:  # reported to the orchestrator, which names the run and the cause
        result = {"name": job["name"], "status": "failed", "duration_s": 0.0, "members": [],
                  "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                  "traceback": traceback.format_exc()[-4000:]}
    atomic_write_json(Path(result_path), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
