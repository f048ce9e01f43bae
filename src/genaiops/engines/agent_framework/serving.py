"""What an Agent Framework serving image holds, written into a build context's `bundle/` folder.

    /app/flow/                      the staged app (with `genaiops-app.json`: the variant's params)
    /app/genaiops_af_runtime/       the engine runtime (`serve`: Starlette + uvicorn)
    /app/genaiops-connections.json  connections without secrets (endpoints are defaults)

The image serves `POST /score` and `GET /health` on 8080 like the promptflow image, and takes the
same `<CONN>_<KEY>` variables at start (`engines.serving`), so targets, smoke tests and approvals
do not know which engine built it. `deploy.image` builds it offline from host-built wheels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from genaiops.engines.agent_framework.environment import RUNTIME_DIR, requirement_lines
from genaiops.engines.agent_framework.staging import CACHE_PATTERNS
from genaiops.engines.base import ServingBundle
from genaiops.engines.serving import flow_requirements
from genaiops.hashing import copy_snapshot
from genaiops.workspace.files import atomic_write_text

PORT = 8080
IMAGE_ENV = {"PORT": str(PORT), "PYTHONPATH": "/app", "GENAIOPS_APP_DIR": "/app/flow",
             "AGENT_FRAMEWORK_USER_AGENT_DISABLED": "true"}
RUNTIME_PACKAGE = "genaiops_af_runtime"
TELEMETRY_MODULE = Path(__file__).resolve().parents[1] / "genaiops_telemetry.py"
# the engine's environment has the OpenTelemetry API (agent-framework needs it); the image also exports
TELEMETRY_REQUIREMENTS = ["opentelemetry-sdk>=1.39,<2", "opentelemetry-exporter-otlp-proto-http>=1.39,<2"]


def serving_bundle(flow_dir: Path, bundle: Path, connections: list[dict[str, Any]]) -> ServingBundle:
    app = bundle / "app"
    copy_snapshot(flow_dir, app / "flow", CACHE_PATTERNS)
    shutil.copytree(RUNTIME_DIR / RUNTIME_PACKAGE, app / RUNTIME_PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    atomic_write_text(app / TELEMETRY_MODULE.name, TELEMETRY_MODULE.read_text(encoding="utf-8"))
    described = [{k: c.get(k) for k in ("name", "type", "endpoint", "api_version")}
                 for c in connections]
    atomic_write_text(app / "genaiops-connections.json", json.dumps(described, indent=2) + "\n")
    return ServingBundle(requirements=flow_requirements(flow_dir, requirement_lines() + TELEMETRY_REQUIREMENTS),
                         env=dict(IMAGE_ENV), command=["python", "-m", f"{RUNTIME_PACKAGE}.serve"],
                         port=PORT, flow_dir="/app/flow")
