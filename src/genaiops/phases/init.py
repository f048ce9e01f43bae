"""init: validate the config, resolve the overlay, create/update connections, register changed datasets."""

from __future__ import annotations

from genaiops.config import ExperimentConfig
from genaiops.engines.promptflow.connections import upsert_connections
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.repo import state_dir


def simulator_url_for_init(config: ExperimentConfig) -> str:
    """Connections that use the simulator point at `genaiops simulator`'s fixed port after init;
    phases that start their own simulator re-point them at its ephemeral port."""
    return f"http://127.0.0.1:{config.simulator.port}"


def run_init(config: ExperimentConfig, *, registry_backend: str | None = None) -> dict:
    connections = upsert_connections(config, simulator_url_for_init(config))
    datasets = register_datasets(config, registry_backend)
    result = {
        "phase": "init",
        "ok": True,
        **config.summary(),
        "connections": connections,
        "datasets": datasets,
    }
    env_dir = state_dir(config.repo_root) / config.use_case / (config.env or "default")
    atomic_write_json(env_dir / "resolved-config.json", config.summary())
    return result


def register_datasets(config: ExperimentConfig, backend: str | None) -> list[dict]:
    """Register each dataset file only when its content changed (pinned by content hash)."""
    from genaiops.registry import AssetSpec, open_registry

    kind = backend or config.registry.get("backend", "local")
    registry = open_registry(kind, config.repo_root, config.registry)
    records = []
    sources = {d.name: (d.source, d.description) for d in config.datasets}
    known_paths = {d.source for d in config.datasets}
    for ev in config.evaluators:  # evaluator datasets with a file of their own
        for d in ev.datasets:
            if d.source not in known_paths:
                sources.setdefault(d.name, (d.source, d.description))
                known_paths.add(d.source)
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
