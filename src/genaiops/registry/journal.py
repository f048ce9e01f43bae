"""The local registry's registration records: one sealed JSON per version
(`<registry>/records/<name>/<version>.json`), written in the same transaction as the catalogue row.

The SQLite catalogue is the index (unique names and versions, fast lookups); these records are
what it is checked against when first opened and what it is rebuilt from when it is lost or
damaged, so version numbers survive a truncated catalogue instead of restarting at v1.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.integrity import Damaged, read_sealed, seal

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
                wrong = _shape_problem(path, data)
                if wrong:  # sealed again after an edit: the seal holds, the content does not
                    raise Damaged(path, wrong)
                records[(data["name"], data["version"])] = {k: data.get(k) for k in FIELDS}
        return records


def _shape_problem(path: Path, data: dict) -> str | None:
    """What makes a record that passes its seal unusable: it must name itself (its folder and file)
    with a positive integer version and hold every field."""
    missing = [k for k in FIELDS if k not in data]
    if missing:
        return f"it has no {', '.join(missing)}"
    version = data["version"]
    if type(version) is not int or version < 1:
        return f"its version {version!r} is not a positive whole number"
    if data["name"] != path.parent.name or f"{version}.json" != path.name:
        return f"it records {data['name']!r} v{version}, not the version its path names"
    if not isinstance(data["tags"], dict):
        return "its tags are not an object"
    return None
