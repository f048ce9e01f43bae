"""Register datasets and flows only when their content changed; pin exact versions.

Cheap to import: backends (sqlite catalogue, azure-ai-ml) load only in `open_registry`.
"""

from genaiops.registry.base import AssetSpec, Registration, Registry, open_registry

__all__ = ["AssetSpec", "Registration", "Registry", "open_registry"]
