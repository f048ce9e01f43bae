"""Experiment-phase benchmarks: genaiops against plain promptflow doing the same work, measured
side by side in one run, each side a fresh process (`harness`).

The sample classification DAG (two LLM calls a line), LLM simulator latency 200 ms (loopback,
not a model):
  B1  4 variant runs x 50 rows: genaiops wall / the same 4 runs as serial plain pf.run   goal <= 0.25
  B2  the second identical genaiops run / the first (and its LLM requests)             goal <= 0.05, 0
  B3  variant-lines per second / ideal (workers x variants per line / line latency)
  B7  one variant (the defaults) over 46 rows from a cold state: genaiops / one plain pf.run
      goal <= 1.10; also with genaiops held to promptflow's default worker count (4), which
      isolates what genaiops adds from what its worker count gains

    python benchmarks/bench_experiment.py [--rows 50] [--latency-ms 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import Bench, check, load

SELECTOR = "summarize.full,summarize.brief,classify.terse,summarize.brief+classify.terse"
REFERENCE_VARIANTS = ["${summarize.full}", "${summarize.brief}", "${classify.terse}", "${classify.careful}"]
FLOW = "flows/classification/standard"
MAPPING = '{"text": "${data.text}"}'


def b1_b2_b3(bench: Bench, sim, rows: int, latency_ms: float) -> dict:
    data = bench.dataset("bench", "datasets/classification/tickets.jsonl", rows)
    bench.overlay("classification", "bench", "datasets:\n  - name: bench\n"
                  "    source: datasets/classification/bench.jsonl\n    mappings: {text: \"${data.text}\"}\n"
                  "evaluators: []\n")
    reference = check(bench.reference("runs", "--base-url", sim.openai_base_url,
                                      "--flow", str(bench.repo / FLOW), "--data", str(data),
                                      "--mapping", MAPPING, "--variants", json.dumps(REFERENCE_VARIANTS)),
                      "reference serial pf.run")
    assert all(r["status"] == "Completed" and not r["failed"] for r in reference.json()["runs"])
    first = check(bench.genaiops("run", "experiment", "-u", "classification", "-e", "bench",
                                 "--variants", SELECTOR, "--json"), "genaiops run experiment")
    second = check(bench.genaiops("run", "experiment", "-u", "classification", "-e", "bench",
                                  "--variants", SELECTOR, "--json"), "genaiops second run")
    result = first.json()
    assert result["ok"] and result["totals"]["lines_failed"] == 0
    assert all(r["reused"] for r in second.json()["runs"]) and second.json()["simulator"] is None
    from genaiops.execution.capacity import worker_count

    workers = worker_count("auto", rows, calls_llm=True)  # what `runtime.worker_count: auto` picked
    chains = len(result["runs"])
    ideal = workers * chains / (2 * latency_ms / 1000)  # two LLM calls in sequence per line
    lines_per_s = result["totals"]["lines_ok"] / first.seconds
    return {
        "B1": round(first.seconds / reference.seconds, 3), "B2": round(second.seconds / first.seconds, 4),
        "B3": round(lines_per_s / ideal, 3),
        "reference_s": round(reference.seconds, 2), "genaiops_s": round(first.seconds, 2),
        "second_s": round(second.seconds, 2), "lines_per_s": round(lines_per_s, 1),
        "ideal_lines_per_s": round(ideal, 1), "workers": workers,
        "peak_mb": {"genaiops": round(first.peak_mb), "reference": round(reference.peak_mb)},
    }


def b7(bench: Bench, sim, repeat: int) -> dict:
    bench.overlay("classification", "single", "evaluators: []\n")
    data = bench.repo / "datasets/classification/tickets.jsonl"
    times = {"reference": [], "genaiops": [], "genaiops_4_workers": []}
    peaks = {key: 0.0 for key in times}
    for _ in range(repeat):  # interleaved, each from a cold state
        for key, args in (("reference", None), ("genaiops", []), ("genaiops_4_workers", ["--workers", "4"])):
            bench.fresh_state()
            if args is None:
                measured = check(bench.reference("runs", "--base-url", sim.openai_base_url, "--flow",
                                                 str(bench.repo / FLOW), "--data", str(data),
                                                 "--mapping", MAPPING), "reference pf.run")
            else:
                measured = check(bench.genaiops("run", "experiment", "-u", "classification", "-e",
                                                "single", "--json", *args), "genaiops single variant")
            times[key].append(measured.seconds)
            peaks[key] = max(peaks[key], measured.peak_mb)
    median = {key: statistics.median(values) for key, values in times.items()}
    return {"B7": round(median["genaiops"] / median["reference"], 3),
            "B7_same_workers": round(median["genaiops_4_workers"] / median["reference"], 3),
            "seconds": {key: round(value, 2) for key, value in median.items()},
            "peak_mb": {key: round(value) for key, value in peaks.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.simulator import SimulatorServer

    bench = Bench("experiment")
    latency = {"GENAIOPS_SIMULATOR_LATENCY_MS": str(args.latency_ms)}
    bench.env.update(latency)
    try:
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms) as sim:
            variants = b1_b2_b3(bench, sim, args.rows, args.latency_ms)
            single = b7(bench, sim, args.repeat)
    finally:
        bench.close()
    if args.json:
        print(json.dumps({"variants": variants, "single": single}))
        return 0
    print(f"B1 4 variants x {args.rows} rows, {args.latency_ms:g} ms: genaiops {variants['genaiops_s']} s "
          f"/ serial plain pf.run {variants['reference_s']} s = {variants['B1']}  (goal <= 0.25)")
    print(f"B2 second identical run / first = {variants['B2']}, 0 LLM requests  (goal <= 0.05)")
    print(f"B3 {variants['lines_per_s']} variant-lines/s of an ideal {variants['ideal_lines_per_s']} "
          f"({variants['workers']} workers) = {variants['B3']}")
    print(f"B7 one variant, 46 rows, cold: genaiops {single['seconds']['genaiops']} s / plain pf.run "
          f"{single['seconds']['reference']} s = {single['B7']}  (goal <= 1.10); with 4 workers like "
          f"pf.run: {single['seconds']['genaiops_4_workers']} s = {single['B7_same_workers']}")
    print(f"   peak memory (PSS of the process tree): B1 genaiops {variants['peak_mb']['genaiops']} MB, "
          f"reference {variants['peak_mb']['reference']} MB; B7 genaiops {single['peak_mb']['genaiops']} MB, "
          f"reference {single['peak_mb']['reference']} MB")
    print("RESULT " + json.dumps({"B1": variants["B1"], "B7": single["B7"],
                                  "peak_mb": {"B1": variants["peak_mb"], "B7": single["peak_mb"]}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
