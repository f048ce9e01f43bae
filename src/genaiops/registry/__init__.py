"""Register datasets and flows only when their content changed; pin exact versions.

`base` is the contract (`Registry` for callers, `AssetStore` for backends), `core` the one
dedupe algorithm, `local` and `azureml` the stores, named in `STORE_TABLE` (more from the
`genaiops.registries` entry point group or `GENAIOPS_REGISTRIES`: `genaiops.adapters`). Cheap to
import: backends (sqlite catalogue, azure-ai-ml) load only in `open_registry`.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.adapters import AdapterTable
from genaiops.registry.base import BACKENDS, AssetSpec, Registration, Registry

# name -> the store's `for_repo(repo_root, settings)`
STORE_TABLE = AdapterTable("registries", "registry backend", {
    "local": "genaiops.registry.local:LocalStore.for_repo",
    "azureml": "genaiops.registry.azureml:AzureMLStore.for_repo",
})


def open_registry(kind: str, repo_root: Path, settings: dict | None = None) -> Registry:
    """The registry backend named by config or `--registry`: "local" (default) or "azureml"."""
    from genaiops.registry.core import ContentRegistry

    store = STORE_TABLE.load(kind)(Path(repo_root), dict(settings or {}))
    return ContentRegistry(store, Path(repo_root))


__all__ = ["BACKENDS", "STORE_TABLE", "AssetSpec", "Registration", "Registry", "open_registry"]
