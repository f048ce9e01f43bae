"""The reference template's way, with plain promptflow: `pf.run` per variant, one after another,
then `pf.run` per evaluator and variant run. Used by the benchmarks as the baseline; it imports
nothing of genaiops but the loopback simulator's address it is given.

    python reference.py runs --base-url URL --flow F --data D --mapping JSON --variants JSON
                             [--evaluations JSON]
    python reference.py evaluate --base-url URL --data D --runs JSON --evaluations JSON

`--variants` is a list of promptflow variant strings ("" for the defaults, "${node.variant}");
`--evaluations` a list of {"flow": F, "mapping": {...}} run against every variant run (`runs`
makes the variant runs first; `evaluate` takes the names of runs made earlier).
Prints JSON: per run its name, status, failed and completed lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def quiet() -> None:
    """What any headless promptflow user sets: no telemetry, no trace service, a file keyring."""
    os.environ.setdefault("PF_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PF_TRACING_SKIP_LOCAL_SETUP", "true")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    os.environ.setdefault("PF_LOGGING_LEVEL", "WARNING")


def summary(run) -> dict:
    metrics = run.properties.get("system_metrics", {})
    return {"name": run.name, "status": run.status, "failed": metrics.get("__pf__.lines.failed", 0),
            "completed": metrics.get("__pf__.lines.completed", 0)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["runs", "evaluate"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--flow")
    parser.add_argument("--data", required=True)
    parser.add_argument("--mapping", default="{}")
    parser.add_argument("--variants", default='[""]')
    parser.add_argument("--runs", default="[]", help="names of earlier runs to evaluate")
    parser.add_argument("--evaluations", default="[]")
    args = parser.parse_args(argv)
    quiet()
    from promptflow.client import PFClient
    from promptflow.entities import OpenAIConnection

    client = PFClient()
    client.connections.create_or_update(OpenAIConnection(name="llm", api_key="simulator-key",
                                                         base_url=args.base_url))
    runs = []
    if args.command == "runs":
        for variant in json.loads(args.variants):
            runs.append(client.run(flow=args.flow, data=args.data, variant=variant or None,
                                   column_mapping=json.loads(args.mapping), stream=False))
    else:
        runs = [client.runs.get(name) for name in json.loads(args.runs)]
    evaluated = []
    for evaluation in json.loads(args.evaluations):
        for run in runs:
            evaluated.append(client.run(flow=evaluation["flow"], data=args.data, run=run,
                                        column_mapping=evaluation["mapping"], stream=False))
    print(json.dumps({"runs": [summary(r) for r in runs] if args.command == "runs" else [],
                      "evaluations": [summary(r) for r in evaluated]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
