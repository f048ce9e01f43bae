"""Azure ML backend: datasets as `Data` assets (uri_file / uri_folder), flows as `Model` assets
(custom_model), the content hash in the tags.

Storage only: `registry.core` decides. Here: list every version of a name (all pages, archived
included, because archived versions still own their number) and create one *explicit* version,
never "latest", so later steps pin `azureml:<name>:<version>`.

Bytes reach Azure in one of two ways:
- default: the SDK uploads a local path inside `create_or_update` (a file as is; a folder as a
  staged copy of exactly the files that were hashed, so `.genaiopsignore` and cache exclusions
  apply to what is uploaded, not only to the hash);
- `settings["uploader"]`: a callable `(snapshot, spec) -> "azureml://..." | "https://..."` that
  has put the bytes somewhere already; the asset then just points there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from genaiops.errors import GenaiopsError
from genaiops.registry.base import AssetSpec, Registration, VersionTaken

# Azure operations attribute on MLClient per asset kind.
OPERATIONS = {"dataset": "data", "flow": "models"}
HASH_TAG = "content_hash"


def _int_version(version) -> int | None:
    text = str(version or "")
    return int(text) if text.isdigit() else None


@contextmanager
def azure_errors(action: str) -> Iterator[None]:
    """Turn SDK/service failures into one clear message instead of a traceback."""
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
    )

    try:
        yield
    except MlException as exc:  # the SDK's own validation (bad local path, empty folder, ...)
        raise GenaiopsError(
            f"Azure ML rejected {action}: {getattr(exc, 'message', None) or exc}"
        ) from exc
    except ClientAuthenticationError as exc:
        raise GenaiopsError(
            f"Azure authentication failed while {action}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            hint="run `az login` (and set AZURE_CLI_CREDENTIAL=1), or set AZURE_CLIENT_ID/"
            "AZURE_TENANT_ID/AZURE_CLIENT_SECRET for a service principal",
        ) from exc
    except HttpResponseError as exc:
        status = getattr(exc, "status_code", None)
        raise GenaiopsError(
            f"Azure ML failed while {action} (HTTP {status}): {getattr(exc, 'message', None) or exc}",
            hint="check AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME and "
            "your role on the workspace",
        ) from exc
    except ServiceRequestError as exc:
        raise GenaiopsError(
            f"cannot reach Azure ML while {action}: {exc}",
            hint="check network access and proxy settings",
        ) from exc


class AzureMLStore:
    scheme = "azureml"

    def __init__(self, ml_client, uploader: Callable | None = None):
        self.ml_client = ml_client
        self.uploader = uploader

    @classmethod
    def from_settings(cls, settings: dict) -> AzureMLStore:
        client = settings.get("ml_client")
        if client is None:
            from genaiops.registry.azureml_client import make_ml_client

            client = make_ml_client(settings)
        return cls(client, settings.get("uploader"))

    @classmethod
    def for_workspace(cls, workspace, settings: dict) -> AzureMLStore:
        """The store `registry.open_registry` opens (the workspace plays no part here)."""
        return cls.from_settings(settings)

    # -- reading ------------------------------------------------------------------------------

    def _registration(self, entity, kind: str, created: bool = False) -> Registration | None:
        version = _int_version(entity.version)
        if version is None:  # a non-numeric version someone else made: cannot be one of ours
            return None
        tags = dict(entity.tags or {})
        context = getattr(entity, "creation_context", None)
        created_at = getattr(context, "created_at", None)
        return Registration(
            name=entity.name,
            kind=kind,
            version=version,
            content_hash=tags.get(HASH_TAG, ""),
            created=created,
            uri=f"azureml:{entity.name}:{version}",
            tags=tags,
            location=str(getattr(entity, "path", None) or getattr(entity, "id", None) or ""),
            created_at=created_at.isoformat()
            if hasattr(created_at, "isoformat")
            else str(created_at or ""),
            description=entity.description or "",
        )

    def _list_versions(self, kind: str, name: str) -> list[Registration]:
        from azure.ai.ml.constants import ListViewType
        from azure.core.exceptions import ResourceNotFoundError

        operations = getattr(self.ml_client, OPERATIONS[kind])
        with azure_errors(f"listing versions of {OPERATIONS[kind]} asset {name!r}"):
            try:
                entities = list(operations.list(name=name, list_view_type=ListViewType.ALL))
            except ResourceNotFoundError:
                entities = []
        found = (self._registration(e, kind) for e in entities)
        return [r for r in found if r is not None]

    def versions(self, name: str) -> list[Registration]:
        found = self._list_versions("dataset", name) + self._list_versions("flow", name)
        return sorted(found, key=lambda r: r.version)

    def list_assets(self) -> list[dict]:
        assets = []
        for kind, attr in OPERATIONS.items():
            with azure_errors(f"listing {attr} assets"):
                containers = list(getattr(self.ml_client, attr).list())
            for container in containers:
                versions = self._list_versions(kind, container.name)
                latest = max((r.version for r in versions), default=None)
                assets.append(
                    {
                        "name": container.name,
                        "kind": kind,
                        "latest_version": latest,
                        "versions": len(versions),
                    }
                )
        return sorted(assets, key=lambda a: (a["name"], a["kind"]))

    # -- writing ------------------------------------------------------------------------------

    def prepare(self, snap) -> None:
        """Nothing to do before the lookup: bytes are uploaded only when a version is created."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Azure has no cross-client lock; `create` detects a lost race and core retries."""
        yield

    @contextmanager
    def _asset_path(self, spec: AssetSpec, snap) -> Iterator[str]:
        if self.uploader is not None:
            yield str(self.uploader(snap, spec))
        elif not snap.is_dir:
            yield str(snap.root)
        else:
            from genaiops.registry.blobstore import BlobStore

            with tempfile.TemporaryDirectory(prefix="genaiops-upload-") as tmp:
                yield str(BlobStore(Path(tmp)).put(snap))

    def _entity(self, spec: AssetSpec, version: int, snap, tags: dict, path: str):
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data, Model

        common = {
            "name": spec.name,
            "version": str(version),
            "path": path,
            "description": spec.description or None,
            "tags": {k: str(v) for k, v in tags.items() if v is not None},
        }
        if spec.kind == "dataset":
            return Data(
                type=AssetTypes.URI_FOLDER if snap.is_dir else AssetTypes.URI_FILE, **common
            )
        # the flow's engine says how the registry recognises it (`Engine.registration_properties`)
        return Model(type=AssetTypes.CUSTOM_MODEL, properties=dict(spec.properties), **common)

    def create(self, spec: AssetSpec, version: int, snap, tags: dict) -> Registration:
        from azure.ai.ml.exceptions import AssetPathException
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        operations = getattr(self.ml_client, OPERATIONS[spec.kind])
        with self._asset_path(spec, snap) as path:
            entity = self._entity(spec, version, snap, tags, path)
            with azure_errors(f"registering {spec.kind} {spec.name!r} version {version}"):
                try:
                    result = operations.create_or_update(entity)
                except (ResourceExistsError, AssetPathException) as exc:
                    raise VersionTaken(str(exc)) from exc
                except HttpResponseError as exc:
                    if getattr(exc, "status_code", None) == 409:
                        raise VersionTaken(str(exc)) from exc
                    raise
        registration = self._registration(result, spec.kind, created=True)
        if (
            registration is None
            or registration.version != version
            or registration.content_hash != snap.content_hash
        ):
            # Someone else's content sits at this number: core re-reads and picks the next one.
            raise VersionTaken(f"{spec.name}:{version} holds other content")
        return registration
