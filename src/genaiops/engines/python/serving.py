"""What a Python flow's serving image holds, written into a build context's `bundle/` folder.

    /app/flow/               the staged flow (with `genaiops-flow.json`: entry and the variant's params)
    /app/genaiops_pyflow/    the runtime (`serve`: a standard-library HTTP server)

It serves `POST /score` and `GET /health` on 8080 like every engine's image and takes the same
`<CONN>_<KEY>` variables at start (`engines.serving`); the connections' secret-free defaults
(endpoints, API versions) are baked in as those variables, overridden at start.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from genaiops.engines.base import ServingBundle
from genaiops.engines.python.local import RUNTIME_DIR
from genaiops.engines.python.staging import CACHE_PATTERNS
from genaiops.engines.serving import env_prefix, flow_requirements
from genaiops.hashing import copy_snapshot

PORT = 8080
RUNTIME_PACKAGE = "genaiops_pyflow"
REQUIREMENTS = ["openai>=1.40,<3", "httpx>=0.27,<1"]


def connection_defaults(connections: list[dict[str, Any]]) -> dict[str, str]:
    """`<CONN>_BASE_URL` / `<CONN>_API_BASE` and `<CONN>_API_VERSION`, without secrets."""
    env: dict[str, str] = {}
    for conn in connections:
        prefix = env_prefix(conn["name"])
        env[f"{prefix}_{'BASE_URL' if conn['type'] == 'open_ai' else 'API_BASE'}"] = conn["endpoint"]
        if conn["type"] != "open_ai" and conn.get("api_version"):
            env[f"{prefix}_API_VERSION"] = conn["api_version"]
    return env


def serving_bundle(flow_dir: Path, bundle: Path, connections: list[dict[str, Any]]) -> ServingBundle:
    app = bundle / "app"
    copy_snapshot(flow_dir, app / "flow", CACHE_PATTERNS)
    shutil.copytree(RUNTIME_DIR / RUNTIME_PACKAGE, app / RUNTIME_PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {"PORT": str(PORT), "PYTHONPATH": "/app", "GENAIOPS_FLOW_DIR": "/app/flow",
           **connection_defaults(connections)}
    return ServingBundle(requirements=flow_requirements(flow_dir, REQUIREMENTS), env=env,
                         command=["python", "-m", f"{RUNTIME_PACKAGE}.serve"], port=PORT,
                         flow_dir="/app/flow")
