"""One batch run: every line of a dataset through every member (variant) of a staged app, with
asyncio concurrency, in this (the engine's) environment.

    python -m genaiops_af_runtime.batch JOB.json RESULT.json < connections.json

The job (written by genaiops, never secret) names the app, its members' parameters, the dataset,
the column mapping, concurrency, the line timeout and the retry policy; the connections, API keys
included, come on stdin so they never touch a file. Progress goes to stdout as `done N` lines;
the result (per member, per line: outputs, error, latency, tokens) is written atomically. The
process stops itself when the orchestrator that started it dies: a watchdog thread starts before
anything slow (importing agent-framework, reading stdin) and polls the parent twice a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

ERROR_CHARS = 1000
WATCH_SECONDS = 0.5


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, default=str)
    os.replace(tmp, path)


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_CHARS]


class Progress:
    def __init__(self):
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        print(f"done {self.done}", flush=True)


async def run_line(app, number: int, row: dict, mapping: dict, timeout_s: float,
                   limit: asyncio.Semaphore, progress: Progress) -> dict:
    from genaiops_af_runtime.app import bind_inputs

    async with limit:
        started = time.monotonic()
        inputs = {}
        try:
            inputs = bind_inputs(mapping, row)
            line = await asyncio.wait_for(app.run(inputs), timeout_s)
        except asyncio.TimeoutError:
            result = {"ok": False, "outputs": None,
                      "error": f"line timed out after {timeout_s:g}s (runtime.line_timeout_sec)"}
            usage = None
        except Exception as exc:  # one bad line is that line's error, never the whole run
            result = {"ok": False, "outputs": None, "error": error_text(exc)}
            usage = None
        else:
            result = {"ok": True, "outputs": line.outputs, "error": None}
            usage = line.usage
        progress.tick()
        return {"line": number, "inputs": inputs, **result,
                "latency_s": round(time.monotonic() - started, 4),
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "completion_tokens": usage.completion_tokens if usage else 0}


async def run_job(job: dict, connections: list[dict]) -> dict:
    from genaiops_af_runtime.app import App, load_build
    from genaiops_af_runtime.llm import Connections, RetryPolicy

    started = time.monotonic()
    policy = RetryPolicy(**job.get("retries", {}))
    llm = Connections(connections, policy, timeout_s=float(job["line_timeout_sec"]))
    try:
        build = load_build(Path(job["flow_root"]), job["entry"])
        rows = read_rows(job["data"])
        progress = Progress()
        members = []
        for member in job["members"]:
            app = App(build, llm, member["params"], job["inputs"], job["outputs"])
            limit = asyncio.Semaphore(max(1, int(job["worker_count"])))
            lines = [run_line(app, number, row, job["column_mapping"], float(job["line_timeout_sec"]),
                              limit, progress) for number, row in enumerate(rows)]
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
        await llm.close()


def _stop_with_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(3)


def main(argv: list[str]) -> int:
    # the orchestrator names itself: if it died before this line, getppid() is already another
    parent = int(os.environ.get("GENAIOPS_PARENT_PID") or os.getppid())
    threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    job_file, result_file = argv[:2]
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    connections = json.loads(sys.stdin.read() or "[]")
    result = asyncio.run(run_job(job, connections))
    write_atomic(result_file, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
