"""The LLM endpoint for a phase: the real one from config, or the bundled simulator started here,
reached through the command's LLM gateway.

When a connection says `api_base: simulator`, the phase starts the loopback LLM simulator on a
free port for its own duration; a caller (a test, a benchmark) may pass a simulator it already
runs, e.g. to inject faults. With the gateway on (the default for local runs) the connections of
every engine in use point at the gateway, pool by pool (`flow` for the experiment, `evaluators`
for LLM-judge evaluation flows), and the gateway forwards to those endpoints; engines never know.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from genaiops.config.model import Connection, ExperimentConfig, Retries
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
    """Connection settings that change what the flow outputs (for run keys); never secrets, and
    never quotas or the gateway (they change how fast, not what)."""
    settings = {}
    for conn in config.connections:
        if conn.uses_simulator:
            rules = config.simulator.rules
            settings[conn.name] = {"type": conn.type, "endpoint": "simulator",
                                   "rules": hash_file(rules) if rules else None}
        else:
            settings[conn.name] = conn.output_identity()
    return settings


def gateway_enabled(config: ExperimentConfig) -> bool:
    """The gateway is a loopback process: runs on remote compute (Azure ML) cannot reach it."""
    return config.runtime.gateway.enabled and config.runtime.backend == "local"


def engine_retries(config: ExperimentConfig) -> Retries:
    """The retry policy engines apply themselves. Behind the gateway: one attempt, because the
    gateway retries within `runtime.retries` and must see every 429 to schedule around it."""
    if gateway_enabled(config):
        return config.runtime.retries.model_copy(update={"max_attempts": 1, "backoff_sec": 0})
    return config.runtime.retries


def open_gateway(config: ExperimentConfig):
    """A started LLM gateway with the config's retry bounds and scheduling settings."""
    from genaiops.gateway import LLMGateway, RetryBounds, SchedulerSettings

    retries, settings = config.runtime.retries, config.runtime.gateway
    return LLMGateway(RetryBounds(retries.max_attempts, retries.backoff_sec, retries.max_total_sec,
                                  retries.max_throttled),
                      SchedulerSettings(utilization=settings.utilization,
                                        max_concurrency=settings.max_concurrency)).start()


def start_simulator(config: ExperimentConfig):
    from genaiops.simulator import SimulatorServer
    from genaiops.simulator.quota import QuotaSpec

    latency = float(os.environ.get("GENAIOPS_SIMULATOR_LATENCY_MS", config.simulator.latency_ms))
    quota = config.simulator.quota
    return SimulatorServer(rules_path=config.simulator.rules, latency_ms=latency, port=0,
                           quota=QuotaSpec(**quota.model_dump()) if quota else None)


@dataclass
class LLMSession:
    simulator: object | None  # a running genaiops.simulator.SimulatorServer, or None
    connections: list[dict]
    gateway: object | None = None  # the genaiops.gateway.LLMGateway calls go through, or None
    endpoints: dict | None = None  # connection name -> the URL callers use (the gateway's)


@contextlib.contextmanager
def llm_session(config: ExperimentConfig, engines, simulator=None, *, gateway=None, pool: str = "flow"):
    """Start the simulator if a connection needs it (unless one is given), route the connections
    through `gateway` (as `pool`) when there is one, then let each engine (`engines`: one or a
    list, the use case's first) prepare them for its runs."""
    engines = engines if isinstance(engines, (list, tuple)) else [engines]
    needs_simulator = any(c.uses_simulator for c in config.connections)
    with contextlib.ExitStack() as stack:
        if needs_simulator and simulator is None:
            simulator = stack.enter_context(start_simulator(config))
        url = simulator.url if (needs_simulator and simulator is not None) else None
        upstreams = endpoints(config, url)
        engine_endpoints = upstreams
        if gateway is not None:
            from genaiops.gateway import Quota

            for conn in config.connections:
                gateway.route(conn.name, upstreams[conn.name], Quota(**conn.quota) if conn.quota else None)
            engine_endpoints = {name: gateway.url_for(pool, name) for name in upstreams}
        connections = [engine.prepare_connections(config.connections, engine_endpoints)
                       for engine in engines][0]
        yield LLMSession(simulator=simulator if needs_simulator else None, connections=connections,
                         gateway=gateway, endpoints=engine_endpoints)
