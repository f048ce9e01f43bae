"""The local registry's registration records: one sealed JSON per version
(`<registry>/records/<name>/<version>.json`), written in the same transaction as the catalogue row.

The SQLite catalogue is the index (unique names and versions, fast lookups); these records are
what it is checked against when first opened and what it is rebuilt from when it is lost or
damaged, so version numbers survive a truncated catalogue instead of restarting at v1.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.integrity import read_sealed, seal

FIELDS = ("name", "version", "kind", "content_hash", "description", "tags", "blob", "created_at")


class Journal:
    def __init__(self, registry_root: Path):
        self.root = Path(registry_root) / "records"

    def path(self, name: str, version: int) -> Path:
        return self.root / name / f"{int(version)}.json"

    def write(self, row: dict) -> None:
        atomic_write_json(self.path(row["name"], row["version"]), seal({k: row[k] for k in FIELDS}))

    def paths(self) -> list[Path]:
        return sorted(self.root.glob("*/*.json")) if self.root.is_dir() else []

    def read_all(self) -> dict[tuple[str, int], dict]:
        """Every record by (name, version); `Damaged` on the first one that is not intact."""
        records = {}
        for path in self.paths():
            data = read_sealed(path)
            if data is not None:
                records[(data["name"], int(data["version"]))] = {k: data.get(k) for k in FIELDS}
        return records
