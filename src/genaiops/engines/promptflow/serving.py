"""What a promptflow serving image holds, written into a build context's `bundle/` folder.

`pf flow build --format docker` (in a child process, see `build`) gives `flow/` and
`connections/*.yaml` whose secrets read `${env:<CONN>_<KEY>}` (`engines.serving`: any such
variable overrides a value there at container start, secrets included). Its Dockerfile needs
continuumio/miniconda3 from a registry, so genaiops' own image builder (`deploy.image`) is used
instead: this module only lays out the files the image copies to `/` and says how to start it
(gunicorn serving promptflow's flask app on 8080: `POST /score`, `GET /health`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from genaiops.engines.base import ServingBundle
from genaiops.engines.processenv import engine_environment, sandboxed
from genaiops.engines.promptflow.env import HOME_ENV
from genaiops.engines.serving import flow_requirements
from genaiops.errors import GenaiopsError
from genaiops.workspace.files import atomic_write_text
from genaiops.workspace.safecopy import copy_regular_tree

PROMPTFLOW_PIN = "promptflow==1.18.5"
SERVING_REQUIREMENTS = ("keyrings.alt", "gunicorn==22.0.0",
                        "opentelemetry-exporter-otlp-proto-http>=1.20,<1.39")  # promptflow-tracing: sdk<1.39
PORT = 8080
# gunicorn's threaded workers: a served flow mostly waits on its LLM calls, so each process serves
# PROMPTFLOW_WORKER_THREADS requests at once. With one request a process (sync workers), 2
# processes kept 20 concurrent requests ~4 s in the queue; one process of 20 threads made every
# request wait for the GIL, so tracing's few ms of CPU a request added 10-20% to p50 latency (B10).
GUNICORN_OPTIONS = ("-k", "gthread", "--timeout", "300")

SERVE_SH = """\
#!/bin/sh
# Connections are created at start from /connections/*.yaml; their secrets read ${env:<CONN>_<KEY>}
# and any <CONN>_<KEY> variable (e.g. LLM_BASE_URL) overrides a value. Nothing secret is in the image.
set -e
for f in /connections/*.yaml; do
  [ -e "$f" ] && pf connection create --file "$f" > /dev/null
done
cd /flow
exec gunicorn {options} -w "$PROMPTFLOW_WORKER_NUM" --threads "$PROMPTFLOW_WORKER_THREADS" \\
  -b "0.0.0.0:$PORT" --pythonpath /serving "genaiops_pf_serve:create_app()"
""".replace("{options}", " ".join(GUNICORN_OPTIONS))

# what `pf flow build` adds to the flow folder: tool metadata of DAG and flex flows
BUILD_GENERATED = (".promptflow/flow.tools.json", ".promptflow/flow.json")

PF_CONFIG = "telemetry:\n  enabled: false\ntrace:\n  destination: none\n"

IMAGE_ENV = {
    "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    "PF_TRACING_SKIP_LOCAL_SETUP": "true", "PF_DISABLE_TELEMETRY": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "PORT": str(PORT), "PROMPTFLOW_WORKER_NUM": "2", "PROMPTFLOW_WORKER_THREADS": "10",
    # traces are exported by genaiops_telemetry (redacted, content only when allowed), not promptflow's own set-up
    "PF_BUILTIN_TRACE_EXPORTERS_DISABLE": "true",
}
SERVING_MODULES = (Path(__file__).resolve().parent / "genaiops_pf_serve.py",
                   Path(__file__).resolve().parents[1] / "genaiops_telemetry.py")


def serving_bundle(flow_dir: Path, bundle: Path, connections: list[dict[str, Any]]) -> ServingBundle:
    """Lay out `bundle/` (copied to `/` in the image) for the staged flow at `flow_dir`."""
    with tempfile.TemporaryDirectory(prefix="genaiops-pfbuild-") as tmp:
        output = Path(tmp) / "out"
        _pf_build(flow_dir, output, connections)
        bundle.mkdir(parents=True, exist_ok=True)
        for part in ("flow", "connections"):
            if (output / part).exists():  # regular files only: a link would copy a host file
                copy_regular_tree(output / part, bundle / part)
    atomic_write_text(bundle / "serve.sh", SERVE_SH)
    for module in SERVING_MODULES:  # the WSGI entry with traces and /feedback (`genaiops_pf_serve`)
        atomic_write_text(bundle / "serving" / module.name, module.read_text(encoding="utf-8"))
    atomic_write_text(bundle / "root" / ".promptflow" / "pf.yaml", PF_CONFIG)
    return ServingBundle(requirements=requirements(bundle / "flow"), env=dict(IMAGE_ENV),
                         command=["/bin/sh", "/serve.sh"], port=PORT, flow_dir="/flow",
                         generated=BUILD_GENERATED)


def _pf_build(flow_dir: Path, output: Path, connections: list[dict[str, Any]]) -> None:
    """`pf flow build` with a throwaway HOME: its connection store holds placeholders only. It is the
    build's temp folder too: promptflow's SDK leaves an Azure Monitor retry folder there on import,
    telemetry on or off. The build imports the flow's Python tools from the output folder: no
    bytecode may be written there, or the image would hold `__pycache__` files the flow's hash does
    not cover (and the scan refuses it)."""
    with tempfile.TemporaryDirectory(prefix="genaiops-pfbuild-home-") as home:
        env = engine_environment({"HOME": home, HOME_ENV: home, "TMPDIR": home, "TMP": home, "TEMP": home,
                                  "PYTHONDONTWRITEBYTECODE": "1"})
        env.pop("PF_HOME_DIRECTORY", None)
        done = subprocess.run(sandboxed([sys.executable, "-m", "genaiops.engines.promptflow.build",
                                         str(flow_dir), str(output), json.dumps(connections)]),
                              capture_output=True, text=True,
                              env=env, timeout=600, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise GenaiopsError("pf flow build failed: " + " | ".join(tail),
                            hint="check the flow with `pf flow test` or `genaiops validate`")


def requirements(flow: Path) -> list[str]:
    """The flow's requirements.txt plus what serving needs (unless the flow already pins it)."""
    return flow_requirements(flow, [PROMPTFLOW_PIN, *SERVING_REQUIREMENTS])
