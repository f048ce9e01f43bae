"""Content-addressed copies of registered bytes: `<root>/sha256/<hex>` is a file (a file asset) or
a folder tree (a folder asset). A blob's name is the hash of what was *copied*, verified in the same
pass, so a file edited between hashing and copying can never be stored under the wrong hash; a
blob is verified against its name again whenever it is reused or read (`verify`), and a damaged
one is handed to `on_damage` (the local registry quarantines it) and stored again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from genaiops import hashing
from genaiops.errors import GenaiopsError
from genaiops.workspace.integrity import Damaged
from genaiops.workspace.sweep import owner_tag


def _changed(path: Path) -> GenaiopsError:
    return GenaiopsError(
        f"{path} changed while it was being registered",
        hint="wait until nothing writes to it, then register again",
    )


class BlobStore:
    def __init__(self, root: Path, on_damage: Callable[[Damaged, str], None] | None = None):
        self.root = Path(root)
        self.on_damage = on_damage  # (damage, recovery) -> None; default: raise

    def verify(self, content_hash: str) -> Path:
        """The blob of `content_hash`, its bytes checked against it; Damaged when they differ."""
        path = self.path_for(content_hash)
        if not path.exists():
            raise Damaged(path, "missing")
        actual = hashing.hash_tree(path) if path.is_dir() else hashing.hash_file(path)
        if actual != content_hash:
            raise Damaged(path, f"its bytes hash to {actual[:19]}..., not to its name")
        return path

    def _damaged(self, damage: Damaged, recovery: str) -> None:
        if self.on_damage is None:
            raise GenaiopsError(f"registered bytes at {damage.path} are damaged ({damage.reason})",
                                hint="remove that blob and register the asset again")
        self.on_damage(damage, recovery)

    def path_for(self, content_hash: str) -> Path:
        algo, _, hexdigest = content_hash.partition(":")
        if algo != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"not a sha256 content hash: {content_hash!r}")
        return self.root / "sha256" / hexdigest

    def put(self, snap: hashing.Snapshot) -> Path:
        """Store the snapshot's bytes under its hash (nothing to do when an intact copy is there;
        a damaged copy is replaced by these bytes, which hash to the same name)."""
        target = self.path_for(snap.content_hash)
        if target.exists():
            try:
                return self.verify(snap.content_hash)
            except Damaged as damage:
                self._damaged(damage, f"stored again from {snap.root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".incoming-{owner_tag()}-", dir=target.parent))
        try:
            for entry in snap.files:
                dest = staging / entry.rel if snap.is_dir else staging / "blob"
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(entry.path, "rb", buffering=0) as src, open(dest, "wb") as out:
                    digest, _ = hashing.hash_stream(src, out.write)
                    out.flush()
                    os.fsync(out.fileno())
                if digest != entry.sha256:
                    raise _changed(entry.path)
            source = staging if snap.is_dir else staging / "blob"
            try:
                os.rename(source, target)
            except OSError:
                if not target.exists():  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target
