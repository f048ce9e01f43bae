"""`genaiops run init` when nothing changed, against the first init and `genaiops --help`, in one run.

    python benchmarks/bench_init.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="genaiops-bench-init-"))
    try:
        (work / "home").mkdir()
        env = {**os.environ, "HOME": str(work / "home"), "GENAIOPS_STATE_DIR": str(work / "state")}
        cli = [sys.executable, "-m", "genaiops", "--repo", str(REPO)]
        first = timed(cli + ["run", "init", "-u", "classification"], env)
        unchanged = min(timed(cli + ["run", "init", "-u", "classification"], env) for _ in range(args.repeat))
        help_time = min(timed(cli + ["--help"], env) for _ in range(args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"genaiops --help              : {help_time:.2f}s")
    print(f"run init (first: connection created, dataset registered): {first:.2f}s")
    print(f"run init (nothing changed)   : {unchanged:.2f}s  = {unchanged / first:.2f} of the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
