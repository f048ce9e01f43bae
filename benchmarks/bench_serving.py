"""B10, what tracing costs a served request: p50 latency of `POST /score` with tracing on / off, at
20 concurrent requests. Both sides are the promptflow serving image's WSGI entry
(`genaiops_pf_serve`: promptflow's flask app with genaiops' root span and `/feedback`) serving the
classification DAG under the image's own server command and defaults (gunicorn, threaded workers:
`serving.GUNICORN_OPTIONS`, PROMPTFLOW_WORKER_NUM x PROMPTFLOW_WORKER_THREADS; local processes, no
Docker), against the LLM simulator
(200 ms a call, two calls a request). Tracing on: `OTEL_EXPORTER_OTLP_ENDPOINT` points at the
embedded receiver, so every request exports its span tree (genaiops' root span and promptflow's
node and LLM spans) over OTLP/HTTP into the trace store, as a local deployment does; the receiver
runs in a process of its own, as `genaiops monitor --receive` does (in this process its decoding and
SQLite writes took the GIL from the simulator, slowing the LLM answers of the traced side). Both servers
run at once and take turns, round by round, so load on the machine falls on both sides alike.

    python benchmarks/bench_serving.py [--rounds 10] [--per-client 5] [--concurrency 20] [--latency-ms 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from harness import Bench, load

ENGINES = Path(__file__).resolve().parents[1] / "src" / "genaiops" / "engines"
CONNECTION = """\
import sys
from promptflow.client import PFClient
from promptflow.entities import OpenAIConnection
PFClient().connections.create_or_update(OpenAIConnection(name="llm", api_key="bench-key", base_url=sys.argv[1]))
"""
TICKETS = ["I was charged twice for my March subscription.", "The app crashes when I open settings.",
           "I cannot log in, my password reset fails.", "Where is my package? Tracking says delivered."]


RECEIVER = """\
import sys
from pathlib import Path
from genaiops.monitoring.receiver import serve
sys.exit(serve(Path(sys.argv[1]), int(sys.argv[2]), lambda line: print(line, flush=True)))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bench: Bench, name: str, base_url: str, tracing: dict) -> tuple[subprocess.Popen, str]:
    """The serving entry under the image's gunicorn command, in its own HOME (promptflow's
    connection store, made first as the image's serve.sh does)."""
    from genaiops.engines.promptflow.serving import GUNICORN_OPTIONS, IMAGE_ENV

    serving = bench.work / "serving"
    if not serving.is_dir():
        serving.mkdir()
        for module in (ENGINES / "genaiops_telemetry.py", ENGINES / "promptflow" / "genaiops_pf_serve.py"):
            shutil.copy(module, serving / module.name)
    home = bench.work / f"home-{name}"
    home.mkdir(exist_ok=True)
    port = free_port()
    env = {**bench.env, "HOME": str(home), "TMPDIR": str(home), "PROMPTFLOW_PROJECT_PATH": str(bench.repo / "flows/classification/standard"),
           "PYTHONPATH": os.pathsep.join([str(serving), os.environ.get("PYTHONPATH", "")]),
           "PF_DISABLE_TELEMETRY": "true", "PF_TRACING_SKIP_LOCAL_SETUP": "true",
           "PF_BUILTIN_TRACE_EXPORTERS_DISABLE": "true", **tracing}
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        if key not in tracing:
            env.pop(key, None)
    subprocess.run([sys.executable, "-c", CONNECTION, base_url], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", *GUNICORN_OPTIONS,
                                "-w", IMAGE_ENV["PROMPTFLOW_WORKER_NUM"], "--threads", IMAGE_ENV["PROMPTFLOW_WORKER_THREADS"],
                                "-b", f"127.0.0.1:{port}", "--pythonpath", str(serving), "genaiops_pf_serve:create_app()"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}"


def start_receiver(bench: Bench) -> tuple[subprocess.Popen, str, Path]:
    """The embedded trace receiver in its own process; returns once it listens."""
    db = bench.work / "traces" / "spans.sqlite"
    db.parent.mkdir()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(db), str(port)], env=bench.env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if not process.stdout or not process.stdout.readline().startswith("trace receiver on"):
        process.kill()
        raise SystemExit(f"the trace receiver did not start (exit {process.wait()})")
    return process, f"http://127.0.0.1:{port}", db


def wait_ready(process: subprocess.Popen, url: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        try:
            answer = httpx.post(url + "/score", json={"text": TICKETS[0]}, timeout=60)
            return {"status": answer.status_code, "traced": "x-genaiops-trace-id" in answer.headers}
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the serving process at {url} did not start (exit {process.poll()})") from None
            time.sleep(0.3)


def cpu_seconds(process: subprocess.Popen) -> float:
    """CPU time (user + system) the server (gunicorn and its workers) used so far: what a request
    costs whatever the machine's load, unlike its latency."""
    import psutil

    root = psutil.Process(process.pid)
    total = 0.0
    for member in (root, *root.children(recursive=True)):
        times = member.cpu_times()
        total += times.user + times.system
    return total


def burst(url: str, concurrency: int, per_client: int) -> tuple[list[float], int]:
    """`concurrency` clients at once, each sending `per_client` requests one after another."""
    latencies, failures, lock = [], [0], threading.Lock()
    start = threading.Barrier(concurrency)

    def client(number: int) -> None:
        with httpx.Client(timeout=120) as http:
            start.wait()
            for i in range(per_client):
                began = time.perf_counter()
                answer = http.post(url + "/score", json={"text": TICKETS[(number + i) % len(TICKETS)]})
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    failures[0] += answer.status_code != 200

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from genaiops.monitoring.store import TraceStore
    from genaiops.simulator import SimulatorServer

    bench = Bench("serving")
    processes = []
    sides = {"off": ([], 0), "on": ([], 0)}
    try:
        receiver, endpoint, traces_db = start_receiver(bench)
        processes.append(receiver)
        with SimulatorServer(rules_path=bench.repo / "configs/classification/simulator.yaml",
                             latency_ms=args.latency_ms) as sim:
            tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "classification",
                       "OTEL_RESOURCE_ATTRIBUTES": "genaiops.use_case=classification,deployment.environment=bench,"
                                                   "genaiops.image=sha256%3Abench"}
            servers = {}
            for name, extra in (("off", {}), ("on", tracing)):
                process, url = start_server(bench, name, sim.openai_base_url, extra)
                processes.append(process)
                servers[name] = (process, url)
            ready = {name: wait_ready(*server) for name, server in servers.items()}
            if ready["on"] != {"status": 200, "traced": True} or ready["off"] != {"status": 200, "traced": False}:
                raise SystemExit(f"unexpected first answers: {ready}")
            for _process, url in servers.values():  # warm: every thread has served once
                burst(url, args.concurrency, 1)
            cpu_before = {name: cpu_seconds(process) for name, (process, _url) in servers.items()}
            for number in range(args.rounds):
                order = ("off", "on") if number % 2 == 0 else ("on", "off")
                for name in order:
                    latencies, failed = burst(servers[name][1], args.concurrency, args.per_client)
                    sides[name] = (sides[name][0] + latencies, sides[name][1] + failed)
            time.sleep(1.0)  # the exporter's last batch
            cpu = {name: cpu_seconds(process) - cpu_before[name] for name, (process, _url) in servers.items()}
            roots = [s for s in TraceStore(traces_db).spans(use_case="classification")
                     if s.name.startswith("invoke_agent")]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        bench.close()
    p50 = {name: statistics.median(lat) for name, (lat, _failed) in sides.items()}
    ratio = round(p50["on"] / p50["off"], 3)
    measured = {"B10": ratio, "p50_on_s": round(p50["on"], 4), "p50_off_s": round(p50["off"], 4),
                "requests_per_side": len(sides["on"][0]), "failed": {k: v[1] for k, v in sides.items()},
                "root_spans_stored": len(roots),
                "cpu_ms_per_request": {name: round(1000 * cpu[name] / max(1, len(sides[name][0])), 1) for name in sides}}
    if args.json:
        print(json.dumps(measured))
        return 0
    print(f"B10 /score p50 latency, tracing on / off, {args.concurrency} concurrent requests, "
          f"{measured['requests_per_side']} requests a side in {args.rounds} alternating rounds, "
          f"simulator {args.latency_ms:g} ms a call:")
    print(f"   tracing on:  p50 {measured['p50_on_s']} s ({measured['root_spans_stored']} root spans stored, "
          f"{measured['failed']['on']} failed)")
    print(f"   tracing off: p50 {measured['p50_off_s']} s ({measured['failed']['off']} failed)")
    print(f"   ratio {ratio}  (goal <= 1.05); serving CPU a request: on {measured['cpu_ms_per_request']['on']} ms, "
          f"off {measured['cpu_ms_per_request']['off']} ms")
    print("RESULT " + json.dumps({"B10": ratio, "B10_cpu_ms_per_request": measured["cpu_ms_per_request"]}))
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
