"""The LLM endpoint for a phase: the real one from config, or the bundled simulator started here.

When a connection says `api_base: simulator`, the phase starts the loopback LLM simulator on a
free port for its own duration and has every engine in use point its connections at it; a caller
(a test, a benchmark) may pass a simulator it already runs, e.g. to inject faults.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from genaiops.config.model import Connection, ExperimentConfig
from genaiops.errors import GenaiopsError
from genaiops.hashing import hash_file


def endpoint_for(connection: Connection, simulator_url: str | None) -> str:
    """The URL the connection points at; `simulator` becomes the running simulator's address
    (OpenAI's wire protocol under /v1, Azure OpenAI's at the root)."""
    if not connection.uses_simulator:
        return connection.api_base
    if simulator_url is None:
        raise GenaiopsError(f"connection {connection.name!r} uses the LLM simulator, but none is running")
    return simulator_url + "/v1" if connection.type == "open_ai" else simulator_url


def endpoints(config: ExperimentConfig, simulator_url: str | None) -> dict[str, str]:
    return {c.name: endpoint_for(c, simulator_url) for c in config.connections}


def output_settings(config: ExperimentConfig) -> dict:
    """Connection settings that change what the flow outputs (for run keys); never secrets."""
    settings = {}
    for conn in config.connections:
        if conn.uses_simulator:
            rules = config.simulator.rules
            settings[conn.name] = {"type": conn.type, "endpoint": "simulator",
                                   "rules": hash_file(rules) if rules else None}
        else:
            settings[conn.name] = conn.public()
    return settings


@dataclass
class LLMSession:
    simulator: object | None  # a running genaiops.simulator.SimulatorServer, or None
    connections: list[dict]


@contextlib.contextmanager
def llm_session(config: ExperimentConfig, engines, simulator=None):
    """Start the simulator if a connection needs it (unless one is given), then let each engine
    (`engines`: one or a list, the use case's first) prepare the connections for the runs."""
    engines = engines if isinstance(engines, (list, tuple)) else [engines]
    needs_simulator = any(c.uses_simulator for c in config.connections)
    with contextlib.ExitStack() as stack:
        if needs_simulator and simulator is None:
            from genaiops.simulator import SimulatorServer

            latency = float(os.environ.get("GENAIOPS_SIMULATOR_LATENCY_MS", config.simulator.latency_ms))
            simulator = stack.enter_context(
                SimulatorServer(rules_path=config.simulator.rules, latency_ms=latency, port=0))
        url = simulator.url if (needs_simulator and simulator is not None) else None
        urls = endpoints(config, url)
        connections = [engine.prepare_connections(config.connections, urls) for engine in engines][0]
        yield LLMSession(simulator=simulator if needs_simulator else None, connections=connections)
