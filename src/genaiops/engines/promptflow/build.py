"""`pf flow build --format docker` in a child process with a throwaway HOME.

promptflow's build reads the flow's connections from its local store and writes them as
`connections/*.yaml` whose secrets read `${env:<CONN>_<KEY>}`. We give it a private store holding
placeholder connections (no real key ever exists there), so no secret can reach the build context.
Usage: python -m genaiops.engines.promptflow.build FLOW OUTPUT CONNECTIONS_JSON
"""

from __future__ import annotations

import json
import sys

PLACEHOLDER_KEY = "set-at-container-start"


def main(flow: str, output: str, connections_json: str) -> int:
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()
    from promptflow.client import PFClient
    from promptflow.entities import AzureOpenAIConnection, OpenAIConnection

    pf = PFClient()
    for conn in json.loads(connections_json):
        if conn["type"] == "open_ai":
            entity = OpenAIConnection(name=conn["name"], api_key=PLACEHOLDER_KEY, base_url=conn["endpoint"])
        else:
            entity = AzureOpenAIConnection(name=conn["name"], api_key=PLACEHOLDER_KEY,
                                           api_base=conn["endpoint"], api_version=conn.get("api_version") or None)
        pf.connections.create_or_update(entity)
    pf.flows.build(flow=flow, output=output, format="docker")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
