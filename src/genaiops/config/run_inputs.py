"""What a run depends on beyond its files and data - the engine's version, the simulator's rules,
the environment variables its flow reads - for run keys, and whether genaiops can know all of
it, which reuse requires.

Values enter the key hashed and are never stored (a variable may hold a secret). A run is not
reused - it runs again, and the user is told why and how to make it reusable - when its flow:
- reads the environment in a way no name can be given for (a computed name, the whole of it);
- reads an endpoint genaiops does not manage: an undeclared variable whose value is a URL that
  is neither a configured connection's endpoint nor the simulator's address (`simulator.port`);
- names a connection that experiment.yaml does not declare.
A variable declared under `environment_variables:` is known: its value is an input like any
other, and a declared endpoint is trusted to be what its URL says, as a connection's is.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

from genaiops.config.model import ExperimentConfig
from genaiops.engines.base import FlowReads
from genaiops.hashing import hash_file

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class RunInputs:
    identity: dict  # goes into the run key: hashes and versions, never a value of a variable
    not_reusable: list[str] = field(default_factory=list)  # why a finished run cannot be reused

    @property
    def reusable(self) -> bool:
        return not self.not_reusable


def reuse_hint(config: ExperimentConfig) -> str:
    return (f"declare the variables under `environment_variables:` in configs/{config.use_case}/"
            "experiment.yaml (a value may be ${env:NAME}), read them by literal name, and declare "
            "every connection the flow uses; until then every run is a fresh run, as with --force")


def value_digest(name: str, value: str | None) -> str:
    if value is None:
        return "unset"
    return hashlib.sha256(f"{name}={value}".encode()).hexdigest()[:16]


def _endpoint(url: str) -> str:
    return re.sub(r"/v1$", "", url.strip().rstrip("/"))


def managed_endpoints(config: ExperimentConfig) -> set[str]:
    """Endpoints whose outputs the key already covers: configured connections, the simulator."""
    port = config.simulator.port
    found = {_endpoint(f"http://{host}:{port}") for host in LOOPBACK_HOSTS}
    found |= {_endpoint(c.api_base) for c in config.connections if not c.uses_simulator}
    return found


def run_inputs(config: ExperimentConfig, reads: FlowReads, engine_version: str,
               environ: dict | None = None) -> RunInputs:
    environ = os.environ if environ is None else environ
    declared = {name: str(value) for name, value in config.environment_variables.items()}
    names = sorted(set(reads.variables) | set(declared))
    values = {name: declared.get(name, environ.get(name)) for name in names}
    rules = config.simulator.rules
    identity = {
        "engine_version": engine_version,
        "simulator_rules": hash_file(rules) if rules and rules.is_file() else None,
        "environment": {name: value_digest(name, values[name]) for name in names},
        "connections_used": sorted(reads.connections),
    }
    reasons = [f"{where}: genaiops cannot tell which variables it reads" for where in reads.unknown]
    managed = managed_endpoints(config)
    for name, where in sorted(reads.variables.items()):
        value = values[name]
        if name not in declared and value and URL.match(value) and _endpoint(value) not in managed:
            reasons.append(f"{where}: reads {name}, an endpoint genaiops does not manage (its "
                           "outputs can change behind the same URL)")
    known = {c.name for c in config.connections}
    for name, where in sorted(reads.connections.items()):
        if name not in known:
            reasons.append(f"{where}: uses connection {name!r}, which experiment.yaml does not "
                           "declare")
    return RunInputs(identity, reasons)
