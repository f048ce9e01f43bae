"""Throughput of our dataset hash against `sha256sum`, and the time to hash the sample flows.

    python benchmarks/bench_hashing.py [--size-mb 200] [--repeat 3]

Both hashers read the same file from the page cache (a warm-up read comes first); each is run
`--repeat` times, interleaved, and the best run counts. Goal: ours / sha256sum >= 0.8.
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

from genaiops import hashing

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.8


def make_file(path: Path, size_mb: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        handle.writelines(
            block[i % 256 :] + block[: i % 256] for i in range(size_mb)
        )  # distinct blocks, cheap to make


def time_ours(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    digest = hashing.hash_file(path)
    return time.perf_counter() - start, digest


def time_sha256sum(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return time.perf_counter() - start, "sha256:" + out.split()[0]


def sample_flows() -> list[Path]:
    return sorted(p for p in (REPO_ROOT / "flows").glob("*/*") if p.is_dir())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if shutil.which("sha256sum") is None:
        print("sha256sum not found: cannot compare", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="genaiops-bench-") as tmp:
        path = Path(tmp) / "dataset.bin"
        make_file(path, args.size_mb)
        time_ours(path)  # warm-up: both runs read from the page cache
        ours, theirs = [], []
        for _ in range(args.repeat):
            t, ours_digest = time_ours(path)
            ours.append(t)
            t, their_digest = time_sha256sum(path)
            theirs.append(t)
        if ours_digest != their_digest:
            print(f"MISMATCH: ours {ours_digest} != sha256sum {their_digest}", file=sys.stderr)
            return 1
    size = args.size_mb
    ours_mbps, their_mbps = size / min(ours), size / min(theirs)
    ratio = ours_mbps / their_mbps
    print(f"dataset {size} MB, best of {args.repeat}")
    print(f"  genaiops hash_file : {ours_mbps:8.0f} MB/s")
    print(f"  sha256sum          : {their_mbps:8.0f} MB/s")
    print(
        f"  ratio              : {ratio:8.2f}  (goal >= {GOAL}: {'ok' if ratio >= GOAL else 'MISSED'})"
    )

    for flow in sample_flows():
        snap = hashing.snapshot(flow)  # warm-up
        start = time.perf_counter()
        runs = 20
        for _ in range(runs):
            snap = hashing.snapshot(flow)
        elapsed = (time.perf_counter() - start) / runs
        total = sum(e.size for e in snap.files)
        print(
            f"flow {flow.relative_to(REPO_ROOT)}: {len(snap.files)} files, {total} bytes, "
            f"{elapsed * 1000:.2f} ms per hash"
        )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
