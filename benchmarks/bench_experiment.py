"""Experiment-phase benchmark: genaiops vs the reference template's way, measured in one run.

Sample classification flow, 4 variant runs (the node-variant grid) x 1 dataset of 50 rows,
LLM simulator latency 200 ms (loopback, not a model). Prints:
  B1  genaiops wall time / the same 4 runs one after another with plain pf.run      goal <= 0.40
  B2  second identical genaiops run / first run (and its simulator request count)   goal <= 0.05, 0 requests
  B3  variant-lines per second / ideal (workers x variants per line / line latency) goal >= 0.8

    python benchmarks/bench_experiment.py [--rows 50] [--latency-ms 200] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def isolated_environment() -> Path:
    """A private HOME (promptflow store, connections) and state dir, so nothing leaks either way."""
    work = Path(tempfile.mkdtemp(prefix="genaiops-bench-"))
    os.environ["HOME"] = str(work / "home")
    os.environ["GENAIOPS_STATE_DIR"] = str(work / "state")
    (work / "home").mkdir()
    return work


def make_repo(work: Path, rows: int) -> Path:
    root = work / "repo"
    for folder in ("flows", "configs", "datasets"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".promptflow", "process_log"))
    source = [line for line in (REPO / "datasets/classification/tickets.jsonl").read_text().splitlines() if line]
    (root / "datasets/classification/bench.jsonl").write_text(
        "".join(source[i % len(source)] + "\n" for i in range(rows)))
    (root / "configs/classification/experiment.bench.yaml").write_text(
        "datasets:\n  - name: bench\n    source: datasets/classification/bench.jsonl\n"
        "    mappings: {text: \"${data.text}\"}\nevaluators: []\n")
    return root


def reference_serial(repo: Path, variants: list[dict], sim) -> float:
    """The reference template's way: one plain pf.run per variant, one after another."""
    from promptflow.client import PFClient
    from promptflow.entities import OpenAIConnection

    client = PFClient()
    client.connections.create_or_update(
        OpenAIConnection(name="llm", api_key="simulator-key", base_url=sim.openai_base_url))
    started = time.perf_counter()
    for assignment in variants:
        for node, variant_id in assignment.items():
            run = client.run(flow=str(repo / "flows/classification/standard"),
                             data=str(repo / "datasets/classification/bench.jsonl"),
                             column_mapping={"text": "${data.text}"}, variant=f"${{{node}.{variant_id}}}",
                             stream=False)
            failed = run.properties["system_metrics"].get("__pf__.lines.failed", 0)
            assert run.status == "Completed" and not failed, (run.status, failed)
            break  # pf.run takes one node variant; the others stay on their defaults
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--workers", type=int, default=None, help="default: the config's runtime.worker_count")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = isolated_environment()
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()
    from genaiops.config import load_experiment
    from genaiops.phases.context import PhaseContext
    from genaiops.phases.experiment import ExperimentOptions, run_experiment
    from genaiops.simulator import SimulatorServer

    repo = make_repo(work, args.rows)
    config = load_experiment(repo, "classification", "bench")
    # 4 variant runs that plain pf.run can express too: each a single node variant off default
    selector = "summarize.full,summarize.brief,classify.terse,summarize.brief+classify.terse"
    reference_variants = [{"summarize": "full"}, {"summarize": "brief"}, {"classify": "terse"},
                          {"classify": "careful"}]
    workers = args.workers or config.runtime.worker_count
    try:
        with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms) as sim:
            baseline = reference_serial(repo, reference_variants, sim)
            options = ExperimentOptions(variants=selector, worker_count=workers)
            before = sim.stats.requests
            t0 = time.perf_counter()
            ctx = PhaseContext.for_config(config, simulator=sim, show_progress=False)
            first = run_experiment(ctx, options)
            ours = time.perf_counter() - t0
            first_requests = sim.stats.requests - before
            t0 = time.perf_counter()
            ctx = PhaseContext.for_config(config, simulator=sim, show_progress=False)
            second = run_experiment(ctx, options)
            again = time.perf_counter() - t0
            second_requests = sim.stats.requests - before - first_requests
        assert first.ok and second.ok
        variant_lines = sum(r["lines_ok"] for r in first.runs)
        per_line_latency = 2 * args.latency_ms / 1000  # two LLM nodes in sequence per variant
        chains = len(first.runs)
        ideal = workers * chains / per_line_latency
        result = {
            "rows": args.rows, "variants": chains, "latency_ms": args.latency_ms, "workers": workers,
            "reference_serial_s": round(baseline, 2), "genaiops_first_s": round(ours, 2),
            "genaiops_second_s": round(again, 3), "first_requests": first_requests,
            "second_requests": second_requests,
            "B1": round(ours / baseline, 3), "B2": round(again / ours, 4),
            "B3": round((variant_lines / ours) / ideal, 3),
            "lines_per_s": round(variant_lines / ours, 1), "ideal_lines_per_s": round(ideal, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"reference (4 x plain pf.run, serial): {result['reference_serial_s']:.1f}s")
        print(f"genaiops run experiment (first):      {result['genaiops_first_s']:.1f}s, "
              f"{first_requests} simulator requests, {workers} workers")
        print(f"genaiops run experiment (second):     {result['genaiops_second_s']:.2f}s, "
              f"{second_requests} simulator requests")
        print(f"B1 wall / reference serial = {result['B1']:.3f}  (goal <= 0.40)")
        print(f"B2 second / first          = {result['B2']:.4f} (goal <= 0.05, 0 requests: {second_requests})")
        print(f"B3 lines/s / ideal         = {result['B3']:.3f}  ({result['lines_per_s']} of "
              f"{result['ideal_lines_per_s']} variant-lines/s; goal >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
