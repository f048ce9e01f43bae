"""What every benchmark shares: a private HOME and state, a copy of the sample repository with the
benchmark's own overlay, commands timed with the peak memory of their whole process tree, and the
reference template's way of doing the same work with plain promptflow (`reference.py`).

Both sides run as fresh processes, so each pays for its own interpreter, imports and exit, as a
pipeline step would. Memory is the largest sum over the process tree of each process's
proportional set size (PSS: shared pages divided among the processes sharing them), sampled
once a second; RSS summed over forked workers would count shared pages many times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# Each sample walks the page tables of every process in the tree (/proc/<pid>/smaps_rollup), a
# cost the kernel charges to the sampler but takes from the command measured: every 0.2 s it was
# 11-13% of a 2-core machine during B11 (`perf record -a`: smaps_account), which throughput
# benchmarks against a fixed quota (B8, B11) then lost. Once a second costs a fifth of that.
SAMPLE_SECONDS = 1.0


@dataclass
class Measured:
    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        """The command's JSON: all of stdout, or its last line (promptflow prints before it)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return json.loads(self.stdout.strip().splitlines()[-1])


class Bench:
    """A private machine state: HOME (promptflow store, connections), genaiops state, a repo copy."""

    def __init__(self, name: str):
        self.work = Path(tempfile.mkdtemp(prefix=f"genaiops-bench-{name}-"))
        self.repo = self.work / "repo"
        for folder in ("flows", "configs", "datasets"):
            shutil.copytree(REPO / folder, self.repo / folder,
                            ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
        self.env = {**os.environ, "HOME": str(self.work / "home"),
                    "GENAIOPS_STATE_DIR": str(self.work / "state"), "PYTHONUNBUFFERED": "1"}
        (self.work / "home").mkdir()

    def dataset(self, name: str, source: str, rows: int) -> Path:
        """`rows` lines cycled from a sample dataset (relative path in the repo)."""
        lines = [line for line in (self.repo / source).read_text().splitlines() if line.strip()]
        path = self.repo / Path(source).parent / f"{name}.jsonl"
        path.write_text("".join(lines[i % len(lines)] + "\n" for i in range(rows)))
        return path

    def overlay(self, use_case: str, env: str, text: str) -> None:
        (self.repo / "configs" / use_case / f"experiment.{env}.yaml").write_text(text)

    def fresh_state(self) -> None:
        """Cold state for the next command: no ledger, no runs, no connections."""
        for folder in ("state", "home"):
            shutil.rmtree(self.work / folder, ignore_errors=True)
        (self.work / "home").mkdir()

    def genaiops(self, *args: str, env: dict | None = None) -> Measured:
        return measure([sys.executable, "-m", "genaiops", "--repo", str(self.repo), *args],
                       {**self.env, **(env or {})})

    def reference(self, *args: str, env: dict | None = None) -> Measured:
        return measure([sys.executable, str(HERE / "reference.py"), *args], {**self.env, **(env or {})})

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _tree_pss_mb(root: psutil.Process) -> float:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def measure(command: list[str], env: dict) -> Measured:
    """Run `command`; wall time and the peak PSS of its process tree (workers in their own
    sessions included: they are still its descendants)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(process.pid)
        except psutil.Error:
            return
        while not done.is_set():
            peak[0] = max(peak[0], _tree_pss_mb(root))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return Measured(seconds, peak[0], process.returncode, stdout, stderr)


def check(measured: Measured, what: str) -> Measured:
    if measured.returncode != 0:
        raise SystemExit(f"{what} failed (exit {measured.returncode}):\n{measured.stderr[-3000:]}"
                         f"\n{measured.stdout[-2000:]}")
    return measured


def load() -> str:
    """The machine's load averages, to read the figures by."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
