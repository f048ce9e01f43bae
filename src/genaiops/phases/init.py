"""init: validate the config, resolve the overlay, prepare connections, register changed datasets."""

from __future__ import annotations

from dataclasses import dataclass

from genaiops.phases.context import PhaseContext
from genaiops.workspace.files import atomic_write_json


@dataclass
class InitResult:
    config: dict  # the secret-free resolved config (`ExperimentConfig.summary()`)
    connections: list[dict]
    datasets: list[dict]

    ok = True

    def to_json(self) -> dict:
        return {"phase": "init", "ok": True, **self.config, "connections": self.connections,
                "datasets": self.datasets}


def simulator_url_for_init(ctx: PhaseContext) -> str:
    """Connections that use the simulator point at `genaiops simulator`'s fixed port after init;
    phases that start their own simulator re-point them at its ephemeral port."""
    return f"http://127.0.0.1:{ctx.config.simulator.port}"


def run_init(ctx: PhaseContext, *, registry_backend: str | None = None) -> InitResult:
    from genaiops.gateway.llm_session import endpoints

    config = ctx.config
    datasets = register_datasets(ctx, registry_backend)  # first: the engine may still be starting
    urls = endpoints(config, simulator_url_for_init(ctx))
    connections = [engine.prepare_connections(config.connections, urls)
                   for engine in ctx.engines_in_use()][0]  # the use case's engine's records
    atomic_write_json(ctx.workspace.resolved_config(config.use_case, config.env), config.summary())
    return InitResult(config.summary(), connections, datasets)


def register_datasets(ctx: PhaseContext, backend: str | None) -> list[dict]:
    """Register each dataset file, and the use case's cassette folder when it has one, only when
    its content changed (pinned by content hash)."""
    from genaiops.registry import AssetSpec

    config = ctx.config
    kind = backend or config.registry.get("backend", "local")
    registry = ctx.project.registry(kind, config.registry)
    records = []
    sources = {d.name: (d.source, d.description) for d in config.datasets}
    known_paths = {d.source for d in config.datasets}
    for ev in config.evaluators:  # evaluator datasets with a file of their own
        for d in ev.datasets:
            if d.source not in known_paths:
                sources.setdefault(d.name, (d.source, d.description))
                known_paths.add(d.source)
    from genaiops.gateway.cassette import cassette_hash

    if cassette_hash(config.cassettes) is not None:  # recorded LLM answers are data replay reads
        sources.setdefault(f"{config.use_case}-cassettes",
                           (config.cassettes, "recorded LLM answers for --llm replay"))
    for name, (path, description) in sources.items():
        reg = registry.register(AssetSpec(name=name, kind="dataset", path=path, description=description))
        records.append({
            "name": name,
            "version": reg.version,
            "content_hash": reg.content_hash,
            "uri": reg.uri,
            "status": "registered" if reg.created else "unchanged",
        })
    return records
