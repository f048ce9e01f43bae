"""Runs every benchmark; each prints ratios against a baseline measured in the same run. The
closing table gathers B1, B6, B7, B8, B9, B10, B11 and B12 with the peak memory of each side, and names the
machine and its load (other work on the machine disturbs the figures)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["bench_hashing.py", "bench_init.py", "bench_experiment.py", "bench_verdict.py",
              "bench_evaluate.py", "bench_quota.py", "bench_serving.py", "bench_monitor.py",
              "bench_replay.py"]
GOALS = {"B1": "<= 0.25", "B6": "<= 0.35", "B7": "<= 1.10", "B8": ">= 0.90, 0 failed lines",
         "B9": "<= 0.40", "B10": "<= 1.05", "B11": ">= 0.90", "B12": "<= 0.25"}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        memory = ""
    return f"{os.cpu_count()} cores ({model}){memory}, {platform.system()} {platform.release()}"


def main() -> int:
    status, results = 0, {}
    start_load = os.getloadavg()
    chosen = only(sys.argv[1:]) if sys.argv[1:] else BENCHMARKS
    for name in chosen:
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / name)], stdout=subprocess.PIPE, text=True)
        status |= done.returncode
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                data = json.loads(line[len("RESULT "):])
                peaks = data.pop("peak_mb", {})
                results.update(data)
                results.setdefault("peak_mb", {}).update(peaks)
            else:
                print(line, flush=True)
    print("== summary")
    print(f"machine: {machine()}; load average before {start_load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    for key, goal in GOALS.items():
        if key not in results and chosen is not BENCHMARKS:
            continue
        peak = results.get("peak_mb", {}).get(key, {})
        memory = ", ".join(f"{side} {mb} MB" for side, mb in peak.items())
        print(f"{key}: {results.get(key, 'not measured')}  (goal {goal})  peak memory: {memory}")
    if "B8_promptflow_default" in results:
        print(f"B8 promptflow default on the same quota: {results['B8_promptflow_default']}, "
              f"genaiops failed lines: {results.get('B8_failed_lines')}")
    return status


def only(names: list[str]) -> list[str]:
    """`run_all.py bench_serving.py bench_monitor.py`: those side by side, with the same summary."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; one of: {', '.join(BENCHMARKS)}")
    return names


if __name__ == "__main__":
    sys.exit(main())
