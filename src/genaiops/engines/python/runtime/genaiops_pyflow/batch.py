"""One batch run of a Python flow: every line through every member (variant) in line worker
processes, each line held to the line timeout.

    python -m genaiops_pyflow.batch JOB.json RESULT.json < connections.json

This process (the leader of its process group) imports the flow once, then forks `worker_count`
line workers that inherit it. A line that outlives `line_timeout_sec` is that line's error: its
worker is killed and replaced. A worker that dies otherwise (killed, out of memory, os._exit)
fails the run as crashed. Connections, keys included, arrive on stdin and become the
`<CONN>_<KEY>` variables `genaiops_pyflow.openai_client` reads. Progress goes to stdout as
`done N`; the result is written atomically. The leader stops when the process that started it
dies (its parent is polled twice a second), and its workers end with it (their pipe closes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from genaiops_pyflow import env_prefix, take_usage, tls_context
from genaiops_pyflow.entry import call, error_text, load

WATCH_SECONDS = 0.5


def connection_env(connections: list[dict[str, Any]]) -> dict[str, str]:
    """The `<CONN>_<KEY>` variables of the use case's connections."""
    env: dict[str, str] = {}
    for conn in connections:
        prefix = env_prefix(conn["name"])
        endpoint = "BASE_URL" if conn["type"] == "open_ai" else "API_BASE"
        env[f"{prefix}_{endpoint}"] = conn["endpoint"]
        env[f"{prefix}_API_KEY"] = conn.get("api_key") or "none"
        for key in ("api_version", "model"):
            if conn.get(key) and (key != "api_version" or conn["type"] != "open_ai"):
                env[f"{prefix}_{key.upper()}"] = str(conn[key])
    return env


def bound(mapping: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A row's inputs: `${data.<column>}` from the row, anything else as written."""
    inputs: dict[str, Any] = {}
    for name, ref in mapping.items():
        column = ref[7:-1] if isinstance(ref, str) and ref.startswith("${data.") else None
        if column is not None and column not in row:
            raise KeyError(f"column {column!r} is not in this row ({name}: {ref})")
        inputs[name] = row[column] if column is not None else ref
    return inputs


def serve_lines(pipe: Connection, function: Any) -> None:
    """A line worker: (line, inputs, params) in, its result out, until the pipe closes."""
    while True:
        try:
            task = pipe.recv()
        except (EOFError, OSError):
            return
        key, inputs, params = task
        started = time.monotonic()
        take_usage()
        try:
            line = {"ok": True, "outputs": call(function, inputs, params), "error": None}
        except BaseException as exc:  # noqa: BLE001 - a failed line is that line's error
            line = {"ok": False, "outputs": None, "error": error_text(exc)}
        pipe.send((key, {**line, "latency_s": round(time.monotonic() - started, 4),
                         **take_usage()}))


class Worker:
    def __init__(self, context: Any, function: Any):
        self.pipe, theirs = multiprocessing.Pipe()
        self.process = context.Process(target=serve_lines, args=(theirs, function), daemon=True)
        self.process.start()
        theirs.close()
        self.task: tuple[Any, float] | None = None  # (key, deadline)

    def kill(self) -> None:
        if self.process.pid and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(5)
        self.pipe.close()


Task = tuple[tuple[int, int], dict[str, Any], dict[str, Any]]  # (member, line), inputs, params
Line = dict[str, Any]


def run_lines(function: Any, tasks: list[Task], workers: int,
              timeout_s: float, on_done: Any) -> tuple[dict[tuple[int, int], Line], str | None]:
    """Results by task key, and why the run crashed (a worker died), or None."""
    context = multiprocessing.get_context("fork")
    pending = deque(tasks)
    inputs = {key: line_inputs for key, line_inputs, _params in tasks}
    pool = [Worker(context, function) for _ in range(max(1, min(workers, len(tasks))))]
    results: dict[tuple[int, int], Line] = {}
    try:
        while pending or any(w.task for w in pool):
            for worker in pool:
                if worker.task is None and pending:
                    task = pending.popleft()
                    worker.pipe.send(task)
                    worker.task = (task[0], time.monotonic() + timeout_s)
            busy = [w for w in pool if w.task]
            deadline = min(w.task[1] for w in busy if w.task)
            ready = wait([w.pipe for w in busy], max(0.0, min(deadline - time.monotonic(), 1.0)))
            for index, worker in enumerate(pool):
                if worker.task is None:
                    continue
                key, line_deadline = worker.task
                if worker.pipe in ready:
                    try:
                        done_key, result = worker.pipe.recv()
                    except (EOFError, OSError):
                        worker.process.join(1)
                        code = worker.process.exitcode
                        return results, (f"a line worker died running line {key[1]} "
                                         f"(exit code {code}); the run is not trustworthy")
                    results[done_key] = {**result, "inputs": inputs[done_key]}
                    worker.task = None
                    on_done()
                elif time.monotonic() > line_deadline:
                    worker.kill()
                    results[key] = {"ok": False, "outputs": None, "inputs": inputs[key],
                                    "error": f"line timed out after {timeout_s:g}s "
                                             "(runtime.line_timeout_sec)",
                                    "latency_s": timeout_s, "prompt_tokens": 0,
                                    "completion_tokens": 0}
                    pool[index] = Worker(context, function)
                    on_done()
        return results, None
    finally:
        for worker in pool:
            worker.kill()


def warm_imports() -> None:
    """Import what `openai_client` needs before forking (a line worker inherits it): openai loads
    its resources and response types lazily, 2-3 CPU-seconds on the first call of a process."""
    try:
        import httpx  # noqa: F401  # pyright: ignore[reportUnusedImport]
        import openai.resources.chat.completions.completions  # noqa: F401  # pyright: ignore[reportUnusedImport]
        import openai.types.chat  # noqa: F401  # pyright: ignore[reportUnusedImport]

        tls_context()
    except ImportError:
        pass  # the flow will say so on its first call, as that line's error


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        function = load(Path(job["flow_root"]), job["entry"])
        source = Path(getattr(sys.modules.get(function.__module__), "__file__", "") or "/")
        if source.is_file() and re.search(r"\b(openai|genaiops_pyflow)\b", source.read_text()):
            warm_imports()  # once here, not in every forked line worker
        with open(job["data"], encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except Exception as exc:  # the flow does not load, the dataset is unreadable
        return {"name": job["name"], "status": "failed", "members": [], "error": error_text(exc),
                "duration_s": round(time.monotonic() - started, 3)}
    tasks: list[Task] = []
    unbound: dict[tuple[int, int], Line] = {}
    for m_index, member in enumerate(job["members"]):
        for number, row in enumerate(rows):
            try:
                tasks.append(((m_index, number), bound(job["column_mapping"], row),
                              member["params"]))
            except KeyError as exc:
                unbound[(m_index, number)] = {"ok": False, "outputs": None, "inputs": {},
                                              "error": str(exc.args[0]), "latency_s": 0.0,
                                              "prompt_tokens": 0, "completion_tokens": 0}
    done = [len(unbound)]

    def tick() -> None:
        done[0] += 1
        print(f"done {done[0]}", flush=True)

    results, crashed = run_lines(function, tasks, int(job["worker_count"]),
                                 float(job["line_timeout_sec"]), tick)
    results.update(unbound)
    # a line's "inputs" are its dataset row, as the promptflow engine records them: an evaluator
    # dataset's key_column joins on a column the flow need not take
    members = [{"suffix": member["suffix"],
                "lines": [{"line": number, **results[(m_index, number)], "inputs": rows[number]}
                          for number in range(len(rows)) if (m_index, number) in results]}
               for m_index, member in enumerate(job["members"])]
    return {"name": job["name"], "status": "failed" if crashed else "completed",
            "members": [] if crashed else members, "error": crashed, "crashed": bool(crashed),
            "duration_s": round(time.monotonic() - started, 3)}


def _stop_with_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)  # the leader's group: itself and its line workers


def main(argv: list[str]) -> int:
    # the orchestrator names itself: if it died before this line, getppid() is already another
    parent = int(os.environ.get("GENAIOPS_PARENT_PID") or os.getppid())
    threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    job_file, result_file = argv[:2]
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    os.environ.update(connection_env(json.loads(sys.stdin.read() or "[]")))
    result = run_job(job)
    tmp = f"{result_file}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, default=str)
    os.replace(tmp, result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
