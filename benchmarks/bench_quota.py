"""B8, throughput at the quota limit: 2,000 LLM calls (1,000 lines of the classification DAG, two
calls a line) against a simulated Azure OpenAI deployment that enforces RPM and TPM over short
windows and answers 429 with retry-after-ms. genaiops (LLM gateway, quota not configured: learned
from the x-ratelimit headers) beside plain pf.run with promptflow's defaults (4 workers,
promptflow-tools' own retries) on the same quota and latency.

Achieved rate = answers / the time from the first answer to the last; the quota's rate is what
binds first: RPM / 60, or TPM / 60 / the estimated tokens (prompt + max_tokens) a call is charged.

    python benchmarks/bench_quota.py [--rows 1000] [--rpm 3000] [--tpm 300000] [--latency-ms 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from harness import Bench, check, load


def rates(stats: dict, rpm: int, tpm: int) -> dict:
    answered = stats["by_status"].get("200", 0)
    span = (stats["last_answer_at"] or 0) - (stats["first_answer_at"] or 0)
    per_call = stats["charged_tokens"] / max(1, answered)
    quota = min(rpm / 60, tpm / 60 / per_call)
    achieved = (answered - 1) / span if span > 0 else 0.0
    return {"achieved_rps": round(achieved, 2), "quota_rps": round(quota, 2),
            "ratio": round(achieved / quota, 3), "answered": answered,
            "throttled": stats.get("throttled", 0), "tokens_per_call": round(per_call, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rpm", type=int, default=3000)
    parser.add_argument("--tpm", type=int, default=300000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.simulator import SimulatorServer

    bench = Bench("quota")
    bench.env["GENAIOPS_SIMULATOR_LATENCY_MS"] = str(args.latency_ms)
    data = bench.dataset("quota", "datasets/classification/tickets.jsonl", args.rows)
    bench.overlay("classification", "quota", (
        "datasets:\n  - name: quota\n    source: datasets/classification/quota.jsonl\n"
        "    mappings: {text: \"${data.text}\"}\nevaluators: []\n"
        "simulator:\n  rules: configs/classification/simulator.yaml\n"
        f"  quota: {{rpm: {args.rpm}, tpm: {args.tpm}}}\n"))
    quota = {"rpm": args.rpm, "tpm": args.tpm}
    try:
        ours = check(bench.genaiops("run", "experiment", "-u", "classification", "-e", "quota", "--json"),
                     "genaiops experiment at the quota")
        result = ours.json()
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms, quota=quota) as sim:
            plain = check(bench.reference("runs", "--base-url", sim.openai_base_url, "--data", str(data),
                                          "--flow", str(bench.repo / "flows/classification/standard"),
                                          "--mapping", '{"text": "${data.text}"}'), "plain pf.run at the quota")
            plain_stats = sim.stats.snapshot()
    finally:
        bench.close()
    genaiops = {**rates(result["simulator"], **quota), "failed_lines": result["totals"]["lines_failed"],
                "seconds": round(ours.seconds, 1), "peak_mb": round(ours.peak_mb),
                "gateway": result["gateway"]["outcomes"]}
    run = plain.json()["runs"][0]
    promptflow = {**rates(plain_stats, **quota), "failed_lines": run["failed"],
                  "seconds": round(plain.seconds, 1), "peak_mb": round(plain.peak_mb)}
    out = {"B8": genaiops["ratio"], "genaiops": genaiops, "promptflow_default": promptflow}
    if args.json:
        print(json.dumps(out))
        return 0
    calls = 2 * args.rows
    print(f"B8 {calls} calls at {args.rpm} RPM / {args.tpm} TPM ({genaiops['tokens_per_call']} estimated "
          f"tokens a call: {genaiops['quota_rps']} requests/s allowed), {args.latency_ms:g} ms latency:")
    print(f"   genaiops:            {genaiops['achieved_rps']} req/s = {genaiops['ratio']} of the quota, "
          f"{genaiops['failed_lines']} failed lines, {genaiops['throttled']} 429s, {genaiops['seconds']} s, "
          f"peak {genaiops['peak_mb']} MB  (goal >= 0.90, 0 failed)")
    print(f"   promptflow default:  {promptflow['achieved_rps']} req/s = {promptflow['ratio']} of the quota, "
          f"{promptflow['failed_lines']} failed lines, {promptflow['throttled']} 429s, {promptflow['seconds']} s, "
          f"peak {promptflow['peak_mb']} MB")
    print("RESULT " + json.dumps({"B8": genaiops["ratio"], "B8_failed_lines": genaiops["failed_lines"],
                                  "B8_promptflow_default": promptflow["ratio"],
                                  "peak_mb": {"B8": {"genaiops": genaiops["peak_mb"],
                                                     "reference": promptflow["peak_mb"]}}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
