"""The bundled loopback LLM SIMULATOR (never a real model): OpenAI/Azure OpenAI wire protocol,
deterministic answers from rules, usage tokens, latency and fault injection.

It lets flows, tests and benchmarks run offline; a user reaches a real model by pointing the
connection at Azure OpenAI/OpenAI instead. Modules: `rules` (the simulator.yaml format and
answering), `faults` (429/500/timeout injection), `stats` (counters), `server` (HTTP) and
`foreground` (serve until Ctrl-C: `genaiops simulator`, `python -m genaiops.simulator`).
Importing this package needs only the stdlib and PyYAML.

    from genaiops.simulator import SimulatorServer
    with SimulatorServer(rules_path="configs/x/simulator.yaml", latency_ms=50) as sim:
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key="any")
"""

from genaiops.simulator.faults import Fault, FaultSet
from genaiops.simulator.rules import Answer, Rules, count_tokens, load_rules, parse_rules
from genaiops.simulator.server import SERVER_HEADER, SIMULATOR_NAME, SimulatorServer
from genaiops.simulator.stats import Stats

DEFAULT_PORT = 8765  # where `genaiops simulator` listens unless --port says otherwise

__all__ = [
    "DEFAULT_PORT",
    "SERVER_HEADER",
    "SIMULATOR_NAME",
    "Answer",
    "Fault",
    "FaultSet",
    "Rules",
    "SimulatorServer",
    "Stats",
    "count_tokens",
    "load_rules",
    "parse_rules",
]
