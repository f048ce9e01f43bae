"""What every engine's serving image shares.

- Connections reach a container the same way whatever the engine: promptflow's `<CONN>_<KEY>`
  environment variables (`LLM_API_KEY`, `LLM_BASE_URL` for OpenAI, `LLM_API_BASE` for Azure
  OpenAI, `LLM_API_VERSION`), set at container start. Deployment targets pass them on (secrets as
  secrets) without knowing which engine built the image.
- Python requirements: the flow's requirements.txt plus what the engine's server needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genaiops.engines.base import ConnectionSettings, ServingConnections


def env_prefix(connection_name: str) -> str:
    """promptflow's `<CONN>_<KEY>` convention (`connection_name.replace(' ', '_').upper()`)."""
    return re.sub(r"\s", "_", connection_name).upper()


def serving_connections(connections: Sequence[ConnectionSettings], endpoints: dict[str, str],
                        default_endpoints: dict[str, str]) -> ServingConnections:
    """Container variables for `connections` at `endpoints` (secrets included, never baked in),
    and secret-free descriptions at `default_endpoints` for the image."""
    env: dict[str, str] = {}
    secrets: list[str] = []
    descriptions: list[dict[str, Any]] = []
    for conn in connections:
        prefix = env_prefix(conn.name)
        endpoint_key = "BASE_URL" if conn.type == "open_ai" else "API_BASE"
        env[f"{prefix}_{endpoint_key}"] = endpoints[conn.name]
        env[f"{prefix}_API_KEY"] = conn.api_key or "none"
        secrets.append(f"{prefix}_API_KEY")
        if conn.type != "open_ai" and conn.api_version:
            env[f"{prefix}_API_VERSION"] = conn.api_version
        descriptions.append({"name": conn.name, "type": conn.type, "api_version": conn.api_version,
                             "endpoint": default_endpoints[conn.name]})
    return ServingConnections(env, tuple(secrets), descriptions)


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _name(line: str) -> str | None:
    match = _REQ_NAME.match(line)
    return match.group(1).lower().replace("_", "-") if match else None


class ConnectionVariables:
    """`Engine.serving_connections` for engines whose image reads the `<CONN>_<KEY>` variables."""

    def serving_connections(self, connections: Sequence[ConnectionSettings], endpoints: dict[str, str],
                            default_endpoints: dict[str, str]) -> ServingConnections:
        return serving_connections(connections, endpoints, default_endpoints)


def flow_requirements(flow: Path, serving: list[str]) -> list[str]:
    """The flow's requirements.txt, plus each of `serving` the flow does not already name."""
    req_file = Path(flow) / "requirements.txt"
    lines: list[str] = []
    if req_file.is_file():
        lines = [ln.strip() for ln in req_file.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.strip().startswith("#")]
    names = {_name(line) for line in lines}
    return lines + [line for line in serving if _name(line) not in names]
