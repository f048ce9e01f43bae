"""B11, `genaiops monitor` scoring throughput at the quota limit: the classification sample's LLM
judge (flows/classification/judge, `reference_free: true`) scores every one of 1,000 production
requests of a deployed image (spans in the embedded trace store, content captured), one judge call
each, against a simulated Azure OpenAI deployment that enforces RPM and TPM over short windows and
answers 429 with retry-after-ms - the same quota and latency as B8. The judge calls go through
monitor's LLM gateway (pool `evaluators`), quota not configured: learned from the x-ratelimit
headers.

Achieved rate = answers / the time from the first answer to the last (as B8); the quota's rate is
what binds first: RPM / 60, or TPM / 60 / the estimated tokens a call is charged.

    python benchmarks/bench_monitor.py [--requests 1000] [--rpm 3000] [--tpm 300000] [--latency-ms 200]
                                       [--workers auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time

from bench_quota import rates
from harness import Bench, check, load

ENV = "monitored"
ARTIFACT = "sha256:" + "b1" * 32
OVERLAY = """\
evaluators:
  - name: accuracy
    flow: flows/classification/evaluation
    datasets:
      - name: tickets_eval
        reference: tickets
        mappings: {groundtruth: "${data.label}", prediction: "${run.outputs.category}"}
  - name: judge
    flow: flows/classification/judge
    reference_free: true
    datasets:
      - name: tickets_judge
        reference: tickets
        mappings: {text: "${data.text}", prediction: "${run.outputs.category}"}
monitoring:
  sample: 1.0
"""


def production(bench: Bench, requests: int) -> None:
    """The deployed image on the audit chain and `requests` of its answered requests in the store."""
    os.environ.update({k: bench.env[k] for k in ("HOME", "GENAIOPS_STATE_DIR", "GENAIOPS_TRUST_DIR")})
    from genaiops.cli import main
    from genaiops.deploy import audit
    from genaiops.monitoring.store import Span, TraceStore
    from genaiops.workspace import Workspace

    if main(["--repo", str(bench.repo), "audit", "init"]) != 0:
        raise SystemExit("genaiops audit init failed")
    workspace = Workspace.for_repo(bench.repo)
    audit.audit_log(workspace).append({
        "event": "deployed", "ok": True, "use_case": "classification", "env": ENV, "target": "docker",
        "artifact": ARTIFACT, "variant": {"label": "summarize.full+classify.careful"}, "image": {"labels": {}}})
    tickets = [json.loads(line) for line in (bench.repo / "datasets/classification/tickets.jsonl").read_text().splitlines()
               if line.strip()]
    now, spans = time.time_ns(), []
    for i in range(requests):
        ticket = tickets[i % len(tickets)]
        start = now - (i + 1) * 1_000_000_000
        spans.append(Span(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8),
                          name="invoke_agent classification", start_ns=start, end_ns=start + 900_000_000,
                          attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 230,
                                      "gen_ai.usage.output_tokens": 12, "gen_ai.response.model": "gpt-4o-mini",
                                      "genaiops.inputs": json.dumps({"text": f"{ticket['text']} (#{i})"}),
                                      "genaiops.outputs": json.dumps({"category": ticket["label"], "summary": "s"})},
                          resource={"genaiops.use_case": "classification", "deployment.environment": ENV,
                                    "genaiops.image": ARTIFACT}))
    TraceStore(workspace.traces_db).add_spans(spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rpm", type=int, default=3000)
    parser.add_argument("--tpm", type=int, default=300000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--workers", default="auto", help="runtime.worker_count of the judge's batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.simulator import SimulatorServer

    bench = Bench("monitor")
    bench.env["GENAIOPS_TRUST_DIR"] = str(bench.work / "trust")
    bench.overlay("classification", ENV, OVERLAY + (
        "" if args.workers == "auto" else f"runtime:\n  worker_count: {int(args.workers)}\n  max_parallel: 2\n"
                                          "  retries: {max_attempts: 5, backoff_sec: 0.5}\n"))
    deployment = bench.repo / "configs/classification/deployment.yaml"
    deployment.write_text(deployment.read_text().replace(
        "environments:\n", f"environments:\n  {ENV}:\n    target: docker\n    port: 18111\n", 1))
    quota = {"rpm": args.rpm, "tpm": args.tpm}
    try:
        production(bench, args.requests)
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms, quota=quota) as sim:
            ours = check(bench.genaiops("monitor", "-u", "classification", "-e", ENV, "--json",
                                        env={"LLM_API_BASE": sim.openai_base_url}), "genaiops monitor at the quota")
            stats = sim.stats.snapshot()
    finally:
        bench.close()
    result = ours.json()
    checks = {c["metric"]: c for c in result["checks"]}
    measured = {**rates(stats, **quota), "judged": checks.get("judge.agrees", {}).get("n", 0),
                "gateway_calls": result["llm_calls"], "notes": result["notes"],
                "seconds": round(ours.seconds, 1), "peak_mb": round(ours.peak_mb)}
    if args.json:
        print(json.dumps({"B11": measured["ratio"], "monitor": measured}))
        return 0
    print(f"B11 monitor judging {args.requests} production requests at {args.rpm} RPM / {args.tpm} TPM "
          f"({measured['tokens_per_call']} estimated tokens a call: {measured['quota_rps']} requests/s allowed), "
          f"{args.latency_ms:g} ms latency:")
    print(f"   genaiops monitor: {measured['achieved_rps']} req/s = {measured['ratio']} of the quota, "
          f"{measured['judged']} requests judged, {measured['throttled']} 429s, {measured['seconds']} s, "
          f"peak {measured['peak_mb']} MB  (goal >= 0.90)")
    for note in measured["notes"]:
        print(f"   note: {note}")
    print("RESULT " + json.dumps({"B11": measured["ratio"], "B11_judged": measured["judged"],
                                  "peak_mb": {"B11": {"genaiops": measured["peak_mb"]}}}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
