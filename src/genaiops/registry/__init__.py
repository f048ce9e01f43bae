"""Register datasets and flows only when their content changed; pin exact versions.

`base` is the contract (`Registry` for callers, `AssetStore` for backends), `core` the one
dedupe algorithm, `local` and `azureml` the stores. Cheap to import: backends (sqlite
catalogue, azure-ai-ml) load only in `open_registry`.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.registry.base import BACKENDS, AssetSpec, Registration, Registry


def open_registry(kind: str, repo_root: Path, settings: dict | None = None) -> Registry:
    """The registry backend named by config or `--registry`: "local" (default) or "azureml"."""
    from genaiops.errors import UsageError
    from genaiops.registry.core import ContentRegistry

    settings = dict(settings or {})
    if kind == "local":
        from genaiops.registry.local import LocalStore

        store = LocalStore.for_repo(Path(repo_root), settings)
    elif kind == "azureml":
        from genaiops.registry.azureml import AzureMLStore

        store = AzureMLStore.from_settings(settings)
    else:
        raise UsageError(f"unknown registry backend {kind!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    return ContentRegistry(store, Path(repo_root))


__all__ = ["BACKENDS", "AssetSpec", "Registration", "Registry", "open_registry"]
