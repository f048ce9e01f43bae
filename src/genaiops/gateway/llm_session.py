"""The LLM endpoint for a phase: the real one from config, or the bundled simulator started here,
reached through the command's LLM gateway.

When a connection says `api_base: simulator`, the phase starts the loopback LLM simulator on a
free port for its own duration; a caller (a test, a benchmark) may pass a simulator it already
runs, e.g. to inject faults. With the gateway on (the default for local runs) the connections of
every engine in use point at the gateway, pool by pool (`flow` for the experiment, `evaluators`
for LLM-judge evaluation flows), and the gateway forwards to those endpoints; engines never know.

`llm.mode` record/replay puts the use case's cassette into the gateway (`open_cassette`); replay
starts no simulator and routes to no endpoint, and a call it cannot answer fails the command
(`ReplayMiss`, exit 2) with what changed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from genaiops.config.model import Connection, ExperimentConfig, Retries
from genaiops.errors import GenaiopsError, UsageError
from genaiops.hashing import hash_file

SIMULATOR_MODEL_ENV = "GENAIOPS_SIMULATOR_MODEL"  # the model the simulator says it is (tests)

REPLAY_UPSTREAM = "http://replay.invalid"  # never connected to: replay answers from the cassette


class ReplayMiss(UsageError):
    """Replay met a call the cassette has no answer for: the prompt, a parameter or the number of
    calls changed since the recording."""


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
            if config.simulator.spread:  # stochastic answers: part of what the outputs depend on
                settings[conn.name].update(spread=config.simulator.spread,
                                           seed=config.simulator.seed)
        else:
            settings[conn.name] = conn.output_identity()
    settings.update(llm_identity(config))
    return settings


def llm_identity(config: ExperimentConfig) -> dict:
    """What the LLM mode adds to run keys: replay is keyed on the cassette's hash (a new
    recording is a new run); record always calls (its runs are never reused, so every call is
    recorded); live adds nothing (keys stay as they were)."""
    mode = config.llm.mode
    if mode == "replay":
        from genaiops.gateway.cassette import cassette_hash

        return {"@llm": {"mode": "replay", "cassette": cassette_hash(config.cassettes)}}
    if mode == "record":
        import time

        return {"@llm": {"mode": "record", "at": time.time_ns()}}
    return {}


def open_cassette(config: ExperimentConfig):
    """The use case's cassette for `llm.mode` record or replay (None when live); replay checks
    that the recording fits the config: it exists, and its models are the configured ones."""
    if config.llm.mode == "live":
        return None
    if not gateway_enabled(config):
        raise UsageError(f"--llm {config.llm.mode} needs the LLM gateway, which records and "
                         "replays every call: runtime.backend local and runtime.gateway.enabled",
                         hint="use --llm live for Azure ML runs, or turn the gateway on")
    from genaiops.gateway.cassette import Cassette
    from genaiops.secrets import known_secrets

    cassette = Cassette(config.cassettes, config.llm.mode, known_secrets())
    if config.llm.mode == "replay":
        if not cassette.models():
            raise UsageError(f"--llm replay: no recorded answers in {config.cassettes}",
                             hint=f"record them first: genaiops run experiment -u {config.use_case} "
                                  "--llm record (against the simulator or a real endpoint)")
        check_models(config, cassette.models())
    return cassette


def check_models(config: ExperimentConfig, recorded: dict[str, set[str]]) -> None:
    """Refuse a cassette recorded from another model than the connection's: not the simulator
    when the connection is the simulator, not its `model:` (or a version of it) when it names one."""
    from genaiops.simulator import SIMULATOR_NAME

    problems = []
    for conn in config.connections:
        models = recorded.get(conn.name, set())
        if conn.uses_simulator:
            wrong = sorted(m for m in models if m != SIMULATOR_NAME)
            expected = "the LLM simulator (api_base: simulator)"
        else:
            wrong = sorted(m for m in models if conn.model and m != conn.model
                           and not m.startswith(conn.model + "-"))  # versions: gpt-4o-2024-08-06
            expected = f"model {conn.model!r}"
        if wrong:
            problems.append(f"connection {conn.name!r}: the cassette was recorded from "
                            f"{', '.join(wrong)}, but the config names {expected}")
    if problems:
        raise UsageError(f"--llm replay refuses the cassette {config.cassettes}: " +
                         "; ".join(problems),
                         hint="record it again against the configured model: --llm record")


REPLAY_HINT = "if the change is meant, record again (--llm record) and commit the cassette with it"


def describe_misses(misses) -> list[str]:
    """Distinct misses, most frequent first, each with how many calls it stands for."""
    counts: dict[str, int] = {}
    for miss in misses:
        text = miss.describe()
        counts[text] = counts.get(text, 0) + 1
    return [f"{n} call(s): {text}" if n > 1 else text
            for text, n in sorted(counts.items(), key=lambda item: -item[1])]


def replay_misses(cassette, already: int, where: list[str] | None = None) -> None:
    """Fail the command when replay met calls it had no answer for (beyond the first `already`);
    `where` names the runs and lines that failed for it, when the phase knows them."""
    misses = cassette.misses[already:] if cassette is not None else []
    if not misses:
        return
    distinct = describe_misses(misses)
    shown = "\n".join(f"  - {text}" for text in distinct[:3])
    more = f"\n  ... and {len(distinct) - 3} other change(s)" if len(distinct) > 3 else ""
    located = "".join(f"\n  in {line}" for line in (where or []))
    raise ReplayMiss(f"--llm replay: {len(misses)} LLM call(s) have no recorded answer in "
                     f"{cassette.folder}{located}\n{shown}{more}", hint=REPLAY_HINT)


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
    model = {"model": os.environ[SIMULATOR_MODEL_ENV]} if os.environ.get(SIMULATOR_MODEL_ENV) else {}
    return SimulatorServer(rules_path=config.simulator.rules, latency_ms=latency, port=0,
                           quota=QuotaSpec(**quota.model_dump()) if quota else None,
                           spread=config.simulator.spread, seed=config.simulator.seed, **model)


@dataclass
class LLMSession:
    simulator: object | None  # a running genaiops.simulator.SimulatorServer, or None
    connections: list[dict]
    gateway: object | None = None  # the genaiops.gateway.LLMGateway calls go through, or None
    endpoints: dict | None = None  # connection name -> the URL callers use (the gateway's)


@contextlib.contextmanager
def llm_session(config: ExperimentConfig, engines, simulator=None, *, gateway=None, pool: str = "flow",
                fail_on_miss: bool = True):
    """Start the simulator if a connection needs it (unless one is given), route the connections
    through `gateway` (as `pool`) when there is one, then let each engine (`engines`: one or a
    list, the use case's first) prepare them for its runs. Replaying, nothing upstream is
    started or routed to, and calls without a recorded answer fail the command at the end
    (unless `fail_on_miss` is off: the phase then names the runs and lines itself)."""
    engines = engines if isinstance(engines, (list, tuple)) else [engines]
    cassette = getattr(gateway, "cassette", None)
    replaying = cassette is not None and cassette.mode == "replay"
    needs_simulator = any(c.uses_simulator for c in config.connections) and not replaying
    with contextlib.ExitStack() as stack:
        if needs_simulator and simulator is None:
            simulator = stack.enter_context(start_simulator(config))
        url = simulator.url if (needs_simulator and simulator is not None) else None
        upstreams = {c.name: REPLAY_UPSTREAM for c in config.connections} if replaying \
            else endpoints(config, url)
        engine_endpoints = upstreams
        if gateway is not None:
            from genaiops.gateway import Quota

            for conn in config.connections:
                gateway.route(conn.name, REPLAY_UPSTREAM if replaying else upstreams[conn.name],
                              Quota(**conn.quota) if conn.quota else None)
            engine_endpoints = {name: gateway.url_for(pool, name) for name in upstreams}
        connections = [engine.prepare_connections(config.connections, engine_endpoints)
                       for engine in engines][0]
        already = len(cassette.misses) if cassette is not None else 0
        try:
            yield LLMSession(simulator=simulator if needs_simulator else None,
                             connections=connections, gateway=gateway, endpoints=engine_endpoints)
        except GenaiopsError:
            if fail_on_miss:
                replay_misses(cassette, already)  # the cause of the failed lines, when it is that
            raise
        if fail_on_miss:
            replay_misses(cassette, already)


PROBE_TIMEOUT_SEC = 30.0


def _probe_request(connection: Connection, endpoint: str, deployment: str) -> tuple[str, dict, dict]:
    """The cheapest chat completion there is (one token) in the connection's wire protocol."""
    body = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    if connection.type == "open_ai":
        return (endpoint.rstrip("/") + "/chat/completions", {**body, "model": deployment},
                {"Authorization": f"Bearer {connection.api_key or 'none'}"})
    return (f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={connection.api_version}", body, {"api-key": connection.api_key or "none"})


def probe_models(config: ExperimentConfig, wanted, simulator=None) -> dict:
    """What each (connection, deployment) in `wanted` answers as now: {(conn, deployment): model,
    or None when the endpoint could not be asked}. One small request each, straight to the
    endpoint (the simulator is started for it when the config uses one and none is given).
    Connections that authenticate with Entra ID tokens rather than a key are left out."""
    import httpx

    from genaiops.gateway.served import served_model

    known = {c.name: c for c in config.connections
             if c.auth_mode == "key"}  # Entra ID tokens: not asked, URL trusted
    wanted = sorted(w for w in wanted if w[0] in known)
    found = {}
    with contextlib.ExitStack() as stack:
        if simulator is None and any(known[c].uses_simulator for c, _ in wanted):
            simulator = stack.enter_context(start_simulator(config))
        url = simulator.url if simulator is not None else None
        client = stack.enter_context(httpx.Client(timeout=PROBE_TIMEOUT_SEC))
        for name, deployment in wanted:
            connection = known[name]
            try:
                target, body, headers = _probe_request(connection, endpoint_for(connection, url),
                                                       deployment)
                response = client.post(target, json=body, headers=headers)
                found[(name, deployment)] = (served_model(response.content)[0]
                                             if response.status_code < 300 else None)
            except (httpx.HTTPError, GenaiopsError):
                found[(name, deployment)] = None
    return found
