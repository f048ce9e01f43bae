"""B6, a pull request's verdict from a cold state: `genaiops run verdict -e pr` (init, experiment
and evaluate in one process) against the reference template's way (one process running plain
pf.run per variant, then one running pf.run per evaluator and variant run), side by side. Also
shown: the same work as four genaiops commands (validate, run init, run experiment, run evaluate),
the way a pipeline with one step per phase calls them.

    python benchmarks/bench_verdict.py [--latency-ms 200] [--variants defaults] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import Bench, check, load

REFERENCE_VARIANTS = {"defaults": [""], "all": ["", "${summarize.brief}", "${classify.terse}"]}


def reference(bench: Bench, sim, variants: str) -> tuple[float, float]:
    data = str(bench.repo / "datasets/classification/tickets_pr.jsonl")
    runs = check(bench.reference("runs", "--base-url", sim.openai_base_url, "--data", data,
                                 "--flow", str(bench.repo / "flows/classification/standard"),
                                 "--mapping", '{"text": "${data.text}"}',
                                 "--variants", json.dumps(REFERENCE_VARIANTS[variants])), "reference runs")
    names = [r["name"] for r in runs.json()["runs"]]
    evaluations = [{"flow": str(bench.repo / "flows/classification/evaluation"),
                    "mapping": {"groundtruth": "${data.label}", "prediction": "${run.outputs.category}"}}]
    scored = check(bench.reference("evaluate", "--base-url", sim.openai_base_url, "--data", data,
                                   "--runs", json.dumps(names), "--evaluations", json.dumps(evaluations)),
                   "reference evaluations")
    return runs.seconds + scored.seconds, max(runs.peak_mb, scored.peak_mb)


def verdict(bench: Bench, variants: str) -> tuple[float, float]:
    measured = check(bench.genaiops("run", "verdict", "-u", "classification", "-e", "pr",
                                    "--variants", variants, "--json"), "genaiops run verdict")
    assert measured.json()["evaluate"]["verdict"] == "pass"
    return measured.seconds, measured.peak_mb


def four_commands(bench: Bench, variants: str) -> float:
    seconds = 0.0
    for command in (["validate", "-u", "classification", "-e", "pr"],
                    ["run", "init", "-u", "classification", "-e", "pr"],
                    ["run", "experiment", "-u", "classification", "-e", "pr", "--variants", variants],
                    ["run", "evaluate", "-u", "classification", "-e", "pr"]):
        seconds += check(bench.genaiops(*command, "--json"), " ".join(command)).seconds
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--variants", choices=sorted(REFERENCE_VARIANTS), default="defaults",
                        help="what the PR runs (the pipeline's PR stage: defaults)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.simulator import SimulatorServer

    bench = Bench("verdict")
    bench.env["GENAIOPS_SIMULATOR_LATENCY_MS"] = str(args.latency_ms)
    times = {"reference": [], "verdict": [], "four_commands": []}
    peaks = {"reference": 0.0, "verdict": 0.0}
    try:
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms) as sim:
            for _ in range(args.repeat):  # interleaved, each from a cold state
                bench.fresh_state()
                seconds, peak = reference(bench, sim, args.variants)
                times["reference"].append(seconds)
                peaks["reference"] = max(peaks["reference"], peak)
                bench.fresh_state()
                seconds, peak = verdict(bench, args.variants)
                times["verdict"].append(seconds)
                peaks["verdict"] = max(peaks["verdict"], peak)
                bench.fresh_state()
                times["four_commands"].append(four_commands(bench, args.variants))
    finally:
        bench.close()
    median = {key: round(statistics.median(values), 2) for key, values in times.items()}
    result = {"B6": round(median["verdict"] / median["reference"], 3),
              "B6_four_commands": round(median["four_commands"] / median["reference"], 3),
              "seconds": median, "peak_mb": {k: round(v) for k, v in peaks.items()}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"B6 PR verdict (-e pr, variants {args.variants}, cold): genaiops run verdict "
          f"{median['verdict']} s / reference {median['reference']} s = {result['B6']}  (goal <= 0.35)")
    print(f"   as four genaiops commands: {median['four_commands']} s = {result['B6_four_commands']}")
    print(f"   peak memory (PSS of the process tree): genaiops {result['peak_mb']['verdict']} MB, "
          f"reference {result['peak_mb']['reference']} MB")
    print("RESULT " + json.dumps({"B6": result["B6"], "peak_mb": {"B6": result["peak_mb"]}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
