"""One batch run: every line of a dataset through every member (variant) of a staged app, with
asyncio concurrency, in this (the engine's) environment.

    python -m genaiops_af_runtime.batch JOB.json RESULT.json < connections.json

The job (written by genaiops, never secret) names the app, its members' parameters, the dataset,
the column mapping, concurrency, the line timeout and the retry policy; the connections, API keys
included, come on stdin so they never touch a file. Progress goes to stdout as `done N` lines;
the result (per member, per line: outputs, error, latency, tokens) is written atomically.

Bounds whatever the app does (`genaiops_reaper`, on the path genaiops gives it; `Watchdog`):
- the orchestrator's death sends this process SIGTERM (the parent-death signal), which kills
  every process the app started (this process is their subreaper) and exits;
- a line's timeout is `asyncio.wait_for`, which cannot fire while the line blocks the event loop
  (a synchronous `time.sleep` in a handler, a `build()` that never returns): a thread outside the
  loop sees it blocked past the line timeout, records that line as timed out where it blocked
  and the unfinished lines as not run, writes the result and ends the process. Loading the app
  is held to the same limit;
- before it exits, the worker kills whatever the app started and left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

ERROR_CHARS = 1000
WATCH_SECONDS = 0.5
BEAT_SECONDS = 0.1


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, default=str)
    os.replace(tmp, path)


def error_text(exc: BaseException) -> str:
    from genaiops_af_runtime.app import NodeFailed

    if isinstance(exc, NodeFailed):  # its message is the cause's, as it would read unwrapped
        return str(exc)[:ERROR_CHARS]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_CHARS]


class Progress:
    def __init__(self):
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        print(f"done {self.done}", flush=True)


class Watchdog:
    """Watches the event loop from a thread: a loop that has not ticked for the line timeout is
    blocked by a line (or by loading the app), which `wait_for` cannot interrupt. Then the batch
    ends with what it has: `finished` lines as they are, the blocking line timed out, the rest
    not run."""

    def __init__(self, job: dict, rows: list[dict], result_file: str):
        self.job, self.rows, self.result_file = job, rows, result_file
        self.timeout_s = float(job["line_timeout_sec"])
        self.flow_root = str(Path(job["flow_root"]).resolve())
        self.finished: dict[tuple[str, int], dict] = {}
        self.loaded = False
        self.beat = time.monotonic()
        self.started = time.monotonic()
        self._main = threading.main_thread().ident

    async def heartbeat(self) -> None:
        while True:
            self.beat = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="loop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(BEAT_SECONDS)
            if time.monotonic() - self.beat > self.timeout_s:
                write_atomic(self.result_file, self.blocked_result())
                _exit(0)

    def _blocking(self) -> tuple[tuple[str, int] | None, str]:
        """The line the main thread is running (from its `_timed_line` frame) and where in the
        app it is stuck."""
        frame = sys._current_frames().get(self._main)
        line, where = None, ""
        while frame is not None:
            code = frame.f_code
            if not where and str(Path(code.co_filename).resolve()).startswith(self.flow_root):
                where = f"{Path(code.co_filename).name}:{frame.f_lineno} in {code.co_name}"
            if code.co_name == "_timed_line" and code.co_filename == __file__:
                line = (frame.f_locals.get("suffix"), frame.f_locals.get("number"))
            frame = frame.f_back
        return line, where

    def blocked_result(self) -> dict:
        line, where = self._blocking()
        at = f" at {where}" if where else ""
        base = {"name": self.job["name"], "duration_s": round(time.monotonic() - self.started, 3)}
        if not self.loaded:
            return {**base, "status": "failed", "members": [],
                    "error": f"the app did not load within {self.timeout_s:g}s "
                             f"(runtime.line_timeout_sec){at}: the batch was stopped"}
        blocked = (f"line timed out after {self.timeout_s:g}s (runtime.line_timeout_sec): it blocked "
                   f"the event loop{at} (a synchronous call such as time.sleep in async code, or a "
                   "build() that does not return); the batch was stopped")
        who = f"line {line[1]}" if line else f"a call{at}"
        not_run = (f"not run: the batch was stopped when {who} blocked the event loop past "
                   "runtime.line_timeout_sec")
        members = []
        for member in self.job["members"]:
            lines = []
            for index, row in enumerate(self.rows):
                done = self.finished.get((member["suffix"], index))
                lines.append(done or {"line": index, "inputs": row, "ok": False,
                                      "outputs": None,
                                      "error": blocked if (member["suffix"], index) == line else not_run,
                                      "latency_s": None, "prompt_tokens": 0, "completion_tokens": 0})
            members.append({"suffix": member["suffix"], "lines": lines})
        return {**base, "status": "completed", "members": members}


async def _timed_line(app, suffix: str, number: int, inputs: dict):
    """A line as `wait_for` runs it; its frame's locals tell the watchdog which line blocks."""
    return await app.run(inputs)


async def run_line(app, suffix: str, number: int, row: dict, mapping: dict, timeout_s: float,
                   limit: asyncio.Semaphore, progress: Progress, finished: dict) -> dict:
    from genaiops_af_runtime.app import bind_inputs

    async with limit:
        started = time.monotonic()
        inputs = {}
        try:
            inputs = bind_inputs(mapping, row)
            line = await asyncio.wait_for(_timed_line(app, suffix, number, inputs), timeout_s)
        except asyncio.TimeoutError:
            result = {"ok": False, "outputs": None,
                      "error": f"line timed out after {timeout_s:g}s (runtime.line_timeout_sec)"}
            usage = None
        except Exception as exc:  # one bad line is that line's error, never the whole run
            result = {"ok": False, "outputs": None, "error": error_text(exc),
                      **({"node": exc.node} if getattr(exc, "node", None) else {})}
            usage = None
        else:
            result = {"ok": True, "outputs": line.outputs, "error": None}
            usage = line.usage
        # a line's "inputs" are its dataset row, as every engine records them: an evaluator
        # dataset's key_column joins on a column the app need not take
        record = {"line": number, "inputs": row, **result,
                  "latency_s": round(time.monotonic() - started, 4),
                  "prompt_tokens": usage.prompt_tokens if usage else 0,
                  "completion_tokens": usage.completion_tokens if usage else 0}
        finished[(suffix, number)] = record
        progress.tick()
        return record


async def run_job(job: dict, connections: list[dict], watchdog: Watchdog | None = None) -> dict:
    from genaiops_af_runtime.app import App, load_build
    from genaiops_af_runtime.llm import Connections, RetryPolicy

    started = time.monotonic()
    policy = RetryPolicy(**job.get("retries", {}))
    llm = Connections(connections, policy, timeout_s=float(job["line_timeout_sec"]))
    beat = asyncio.ensure_future(watchdog.heartbeat()) if watchdog else None
    finished = watchdog.finished if watchdog else {}
    try:
        build = load_build(Path(job["flow_root"]), job["entry"])
        if watchdog:
            watchdog.loaded = True
        rows = read_rows(job["data"])
        progress = Progress()
        members = []
        for member in job["members"]:
            app = App(build, llm, member["params"], job["inputs"], job["outputs"])
            limit = asyncio.Semaphore(max(1, int(job["worker_count"])))
            lines = [run_line(app, member["suffix"], number, row, job["column_mapping"],
                              float(job["line_timeout_sec"]), limit, progress, finished)
                     for number, row in enumerate(rows)]
            members.append((member["suffix"], lines))
        gathered = await asyncio.gather(*(asyncio.gather(*lines) for _, lines in members))
        return {"name": job["name"], "status": "completed",
                "duration_s": round(time.monotonic() - started, 3),
                "members": [{"suffix": suffix, "lines": list(lines)}
                            for (suffix, _), lines in zip(members, gathered)]}
    except Exception as exc:  # the app does not load, the dataset is unreadable, ...
        return {"name": job["name"], "status": "failed", "members": [],
                "duration_s": round(time.monotonic() - started, 3),
                "error": error_text(exc) + "\n" + traceback.format_exc(limit=3)[-ERROR_CHARS:]}
    finally:
        if beat is not None:
            beat.cancel()
        await llm.close()


def _exit(code: int) -> None:
    """End this process and everything the app started."""
    from genaiops_reaper import kill_descendants

    sys.stdout.flush()
    kill_descendants()
    os._exit(code)


def _stop_with_parent(parent: int) -> None:
    """Where the kernel sends no parent-death signal (not Linux)."""
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            _exit(3)


def main(argv: list[str]) -> int:
    from genaiops_reaper import contain_self

    signal.signal(signal.SIGTERM, lambda *_: _exit(3))
    if not contain_self(signal.SIGTERM):
        # the orchestrator names itself: if it died before this line, getppid() is already another
        parent = int(os.environ.get("GENAIOPS_PARENT_PID") or os.getppid())
        threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    job_file, result_file = argv[:2]
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    connections = json.loads(sys.stdin.read() or "[]")
    import agent_framework  # noqa: F401  (~0.5 s, before the watchdog's clock starts)

    try:
        rows = read_rows(job["data"])
    except (OSError, ValueError):
        rows = []  # run_job reports it
    watchdog = Watchdog(job, rows, result_file)
    watchdog.start()
    result = asyncio.run(run_job(job, connections, watchdog))
    write_atomic(result_file, result)
    _exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
