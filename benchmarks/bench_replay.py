"""B12, a pull request's verdict replayed from the cassette: `genaiops run verdict -e pr --llm
replay` (no simulator, no endpoint, no key) against the same command live against the simulator
at 200 ms per call, side by side, each from a cold state. The cassette is recorded once first
(`--llm record`, the same command), as the record pipeline would.

    python benchmarks/bench_replay.py [--latency-ms 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import Bench, check, load

COMMAND = ("run", "verdict", "-u", "classification", "-e", "pr", "--json")


def verdict(bench: Bench, mode: str) -> tuple[float, float, dict]:
    """One cold verdict; a failed gate (exit 1: its latency gate on a loaded machine) still
    timed the whole command, a failed line or a replay miss is an error."""
    measured = bench.genaiops(*COMMAND, "--llm", mode)
    if measured.returncode == 1:
        measured.returncode = 0
    result = check(measured, f"genaiops run verdict --llm {mode}").json()
    if result["experiment"]["totals"]["lines_failed"]:
        raise SystemExit(f"--llm {mode}: failed lines: {result['experiment'].get('failures')}")
    return measured.seconds, measured.peak_mb, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bench = Bench("replay")
    bench.env["GENAIOPS_SIMULATOR_LATENCY_MS"] = str(args.latency_ms)
    times = {"live": [], "replay": []}
    phases = {"live": [], "replay": []}  # the experiment phase alone: where the LLM calls are
    peaks = {"live": 0.0, "replay": 0.0}
    try:
        bench.fresh_state()
        _seconds, _peak, recorded = verdict(bench, "record")
        calls = recorded["experiment"]["gateway"]["outcomes"].get("answered", 0)
        for _ in range(args.repeat):  # interleaved, each from a cold state
            for mode in ("live", "replay"):
                bench.fresh_state()
                seconds, peak, result = verdict(bench, mode)
                times[mode].append(seconds)
                phases[mode].append(result["experiment"]["totals"]["duration_s"])
                peaks[mode] = max(peaks[mode], peak)
                if mode == "replay":
                    assert result["evaluate"]["llm"]["mode"] == "replay", result["evaluate"]["llm"]
    finally:
        bench.close()
    median = {key: round(statistics.median(values), 2) for key, values in times.items()}
    experiment = {key: round(statistics.median(values), 2) for key, values in phases.items()}
    result = {"B12": round(median["replay"] / median["live"], 3), "seconds": median,
              "experiment_seconds": experiment,
              "llm_calls": calls, "peak_mb": {k: round(v) for k, v in peaks.items()}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"B12 PR verdict replayed (-e pr, cold, {calls} recorded flow calls): --llm replay "
          f"{median['replay']} s / live against the simulator at {args.latency_ms:g} ms "
          f"{median['live']} s = {result['B12']}  (goal <= 0.25)")
    print(f"   the experiment phase alone: replay {experiment['replay']} s / live "
          f"{experiment['live']} s = {experiment['replay'] / experiment['live']:.3f}")
    print(f"   peak memory (PSS of the process tree): replay {result['peak_mb']['replay']} MB, "
          f"live {result['peak_mb']['live']} MB")
    print("RESULT " + json.dumps({"B12": result["B12"], "peak_mb": {"B12": result["peak_mb"]}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
