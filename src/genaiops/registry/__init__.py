"""Register datasets and flows only when their content changed; pin exact versions.

`base` is the contract (`Registry` for callers, `AssetStore` for backends), `core` the one
dedupe algorithm, `local` and `azureml` the stores, named in `STORE_TABLE` (more from the
`genaiops.registries` entry point group or `GENAIOPS_REGISTRIES`: `genaiops.adapters`). Cheap to
import: backends (sqlite catalogue, azure-ai-ml) load only in `open_registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genaiops.adapters import AdapterTable
from genaiops.registry.base import BACKENDS, AssetSpec, Registration, Registry

if TYPE_CHECKING:
    from genaiops.workspace import Workspace

# name -> the store's `for_workspace(workspace, settings)` (the workspace names the repository
# and the state folder)
STORE_TABLE = AdapterTable("registries", "registry backend", {
    "local": "genaiops.registry.local:LocalStore.for_workspace",
    "azureml": "genaiops.registry.azureml:AzureMLStore.for_workspace",
})


def open_registry(kind: str, workspace: Workspace, settings: dict | None = None) -> Registry:
    """The registry backend named by config or `--registry`: "local" (default) or "azureml".
    Commands call `Project.registry`, which passes the command's workspace."""
    from genaiops.registry.core import ContentRegistry

    store = STORE_TABLE.load(kind)(workspace, dict(settings or {}))
    return ContentRegistry(store, workspace.repo_root)


__all__ = ["BACKENDS", "STORE_TABLE", "AssetSpec", "Registration", "Registry", "open_registry"]
