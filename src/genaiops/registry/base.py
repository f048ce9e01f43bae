"""The registry contract: register an asset only when its content changed, and pin exact versions.

`Registry` is what phases and the CLI use; `AssetStore` is what a backend implements (storage only:
the hash-and-dedupe algorithm lives once, in `registry.core`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

BACKENDS = ("local", "azureml")
KINDS = ("dataset", "flow")


@dataclass(frozen=True)
class AssetSpec:
    """What to register: a dataset file/folder or a flow folder/.prompty file."""

    name: str
    kind: Literal["dataset", "flow"]
    path: Path
    description: str = ""
    ignores: tuple[str, ...] = ()  # gitignore patterns beyond the defaults (a flow engine's caches)
    # what a model registry records with a flow (from its engine: `registration_properties`)
    properties: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Registration:
    """One registered version. `uri` ("local:tickets:3", "azureml:tickets:3") is the pin later steps use."""

    name: str
    kind: str
    version: int
    content_hash: str
    created: bool
    uri: str
    tags: dict = field(default_factory=dict, hash=False, compare=False)
    location: str = ""  # where the bytes live: blob path (local) or asset path/id (azureml)
    created_at: str = ""
    description: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "content_hash": self.content_hash,
            "created": self.created,
            "uri": self.uri,
            "tags": dict(self.tags),
            "location": self.location,
            "created_at": self.created_at,
            "description": self.description,
        }


class Registry(Protocol):
    def register(self, spec: AssetSpec) -> Registration:
        """Hash `spec.path`; return the version holding that content, creating one only if none does."""

    def list_assets(self) -> list[dict]:
        """One dict per asset: name, kind, latest_version, versions."""

    def versions(self, name: str) -> list[Registration]:
        """All versions of `name`, oldest first (empty when unknown)."""

    def get(self, name: str, version: int | None = None) -> Registration:
        """One version (latest when None); UsageError when unknown."""


class VersionTaken(Exception):
    """A store lost a race for a version number; the caller re-reads and tries again."""


class AssetStore(Protocol):
    """Storage behind a `Registry`. Implementations hold no dedupe logic."""

    scheme: str  # "local" | "azureml": the prefix of Registration.uri

    def prepare(self, snap) -> None:
        """Optional work before the write lock, e.g. copying bytes into a content-addressed store."""

    def transaction(self) -> AbstractContextManager[None]:
        """Serialise read-then-create against other writers (a no-op where the service cannot)."""

    def versions(self, name: str) -> list[Registration]:
        """All versions of `name`, any kind, oldest first."""

    def create(self, spec: AssetSpec, version: int, snap, tags: dict) -> Registration:
        """Create exactly `version`; raise VersionTaken if someone else holds it."""

    def list_assets(self) -> list[dict]:
        """Name, kind, latest_version, versions per asset."""
