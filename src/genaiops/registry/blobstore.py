"""Content-addressed copies of registered bytes: `<root>/sha256/<hex>` is a file (a file asset) or
a folder tree (a folder asset). A blob's name is the hash of what was *copied*, verified in the same
pass, so a file edited between hashing and copying can never be stored under the wrong hash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from genaiops import hashing
from genaiops.errors import GenaiopsError


def _changed(path: Path) -> GenaiopsError:
    return GenaiopsError(
        f"{path} changed while it was being registered",
        hint="wait until nothing writes to it, then register again",
    )


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, content_hash: str) -> Path:
        algo, _, hexdigest = content_hash.partition(":")
        if algo != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"not a sha256 content hash: {content_hash!r}")
        return self.root / "sha256" / hexdigest

    def put(self, snap: hashing.Snapshot) -> Path:
        """Store the snapshot's bytes under its hash (no-op when already there)."""
        target = self.path_for(snap.content_hash)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=target.parent))
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
