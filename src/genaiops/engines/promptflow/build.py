"""`pf flow build --format docker` in a child process with a throwaway HOME.

promptflow's build reads the flow's connections from its local store and writes them as
`connections/*.yaml` whose secrets read `${env:<CONN>_<KEY>}`. We give it a private store holding
placeholder connections (no real key ever exists there), so no secret can reach the build context.
It exports only the connections a DAG's nodes name; a flex flow looks its connection up in code
(`PFClient().connections.get("llm")`), so every configured connection it did not export is
written the same way (promptflow's own exporter), else the container starts without it.
Usage: python -m genaiops.engines.promptflow.build FLOW OUTPUT CONNECTIONS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

PLACEHOLDER_KEY = "set-at-container-start"


def main(flow: str, output: str, connections_json: str) -> int:
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()
    from promptflow.client import PFClient  # pyright: ignore[reportMissingTypeStubs]
    from promptflow.entities import (  # pyright: ignore[reportMissingTypeStubs]
        AzureOpenAIConnection,
        OpenAIConnection,
    )

    pf: Any = PFClient()  # promptflow ships no type information: its client is `Any` here
    connections: list[dict[str, Any]] = json.loads(connections_json)
    for conn in connections:
        if conn["type"] == "open_ai":
            entity = OpenAIConnection(name=conn["name"], api_key=PLACEHOLDER_KEY, base_url=conn["endpoint"])
        else:
            entity = cast(Any, AzureOpenAIConnection)(name=conn["name"], api_key=PLACEHOLDER_KEY,
                                                      api_base=conn["endpoint"],
                                                      api_version=conn.get("api_version") or None)
        pf.connections.create_or_update(entity)
    pf.flows.build(flow=flow, output=output, format="docker")
    folder = Path(output) / "connections"
    exported = {p.stem for p in folder.glob("*.yaml")}
    missing = [c["name"] for c in connections
               if pf.flows._refine_connection_name(c["name"]) not in exported]
    if missing:
        pf.flows._migrate_connections(connection_names=missing, output_dir=folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
