"""B9, evaluation of 3 variants x 2 evaluators (the accuracy flow and an LLM judge): `genaiops run
evaluate` against plain pf.run per evaluation one after another, side by side. The experiment
runs each side evaluates are made first and not timed.

    python benchmarks/bench_evaluate.py [--latency-ms 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import Bench, check, load

OVERLAY = """\
evaluators:
  - name: accuracy
    flow: flows/classification/evaluation
    datasets:
      - {name: tickets_eval, reference: tickets,
         mappings: {groundtruth: "${data.label}", prediction: "${run.outputs.category}"}}
  - name: judge
    flow: flows/classification/judge
    datasets:
      - {name: tickets_judge, reference: tickets,
         mappings: {text: "${data.text}", prediction: "${run.outputs.category}"}}
"""
VARIANTS = ["", "${summarize.brief}", "${classify.terse}"]


def reference(bench: Bench, sim) -> tuple[float, float]:
    data = str(bench.repo / "datasets/classification/tickets.jsonl")
    runs = check(bench.reference("runs", "--base-url", sim.openai_base_url, "--data", data,
                                 "--flow", str(bench.repo / "flows/classification/standard"),
                                 "--mapping", '{"text": "${data.text}"}', "--variants", json.dumps(VARIANTS)),
                 "reference variant runs")
    evaluations = [
        {"flow": str(bench.repo / "flows/classification/evaluation"),
         "mapping": {"groundtruth": "${data.label}", "prediction": "${run.outputs.category}"}},
        {"flow": str(bench.repo / "flows/classification/judge"),
         "mapping": {"text": "${data.text}", "prediction": "${run.outputs.category}"}}]
    scored = check(bench.reference("evaluate", "--base-url", sim.openai_base_url, "--data", data,
                                   "--runs", json.dumps([r["name"] for r in runs.json()["runs"]]),
                                   "--evaluations", json.dumps(evaluations)), "reference evaluations")
    assert len(scored.json()["evaluations"]) == 6
    return scored.seconds, scored.peak_mb


def genaiops(bench: Bench) -> tuple[float, float]:
    check(bench.genaiops("run", "experiment", "-u", "classification", "-e", "judged",
                         "--variants", "all", "--json"), "genaiops experiment")
    measured = check(bench.genaiops("run", "evaluate", "-u", "classification", "-e", "judged", "--json"),
                     "genaiops evaluate")
    metrics = {(m["evaluator"], m["variant"]) for m in measured.json()["metrics"]
               if m["evaluator"] in {"accuracy", "judge"}}
    assert len(metrics) == 6, metrics
    return measured.seconds, measured.peak_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.simulator import SimulatorServer

    bench = Bench("evaluate")
    bench.env["GENAIOPS_SIMULATOR_LATENCY_MS"] = str(args.latency_ms)
    bench.overlay("classification", "judged", OVERLAY)
    times = {"reference": [], "genaiops": []}
    peaks = {"reference": 0.0, "genaiops": 0.0}
    try:
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms) as sim:
            for _ in range(args.repeat):
                for key, side in (("reference", lambda: reference(bench, sim)), ("genaiops", lambda: genaiops(bench))):
                    bench.fresh_state()
                    seconds, peak = side()
                    times[key].append(seconds)
                    peaks[key] = max(peaks[key], peak)
    finally:
        bench.close()
    median = {key: round(statistics.median(values), 2) for key, values in times.items()}
    result = {"B9": round(median["genaiops"] / median["reference"], 3), "seconds": median,
              "peak_mb": {k: round(v) for k, v in peaks.items()}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"B9 evaluate 3 variants x 2 evaluators (46 rows): genaiops {median['genaiops']} s / serial "
          f"pf.run {median['reference']} s = {result['B9']}  (goal <= 0.40)")
    print(f"   peak memory (PSS of the process tree): genaiops {result['peak_mb']['genaiops']} MB, "
          f"reference {result['peak_mb']['reference']} MB")
    print("RESULT " + json.dumps({"B9": result["B9"], "peak_mb": {"B9": result["peak_mb"]}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
