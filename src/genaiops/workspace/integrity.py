"""State under `.genaiops/` checks itself when read, and what fails the check is never trusted.

Every JSON record genaiops keeps carries `sha256` of its own content (`seal`); files a record
points at (a run's outputs, a registry blob) are listed there by their hash. `read_sealed`
verifies a record and raises `Damaged` with the reason; the reader then moves the file(s) into
the workspace's quarantine folder (`quarantine`: never deleted, never read again) and recovers -
re-runs the run, re-runs the evaluation, rebuilds the catalogue - with a notice that names the
file and the recovery. Hashes catch corruption (a truncated or garbled file, an edit by hand);
they are not a defence against someone who rewrites a record and its hash together.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from genaiops.errors import GenaiopsError
from genaiops.notices import notice

SEAL = "sha256"  # the key a sealed record keeps its own hash under


class Damaged(Exception):
    """A stored file failed its check; `reason` says how."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


class StateDamaged(GenaiopsError):
    """Damaged state genaiops cannot recover from by itself (the message says what to do)."""


def content_digest(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != SEAL}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(data: dict) -> dict:
    """`data` with the hash of its content under SEAL (what `read_sealed` checks)."""
    return {**data, SEAL: content_digest(data)}


def read_sealed(path: Path) -> dict | None:
    """A sealed record as written, None when there is none; Damaged when it is not intact."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Damaged(path, f"unreadable ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Damaged(path, "not valid JSON (truncated or garbled)") from None
    if not isinstance(data, dict):
        raise Damaged(path, "not a JSON object")
    if SEAL not in data:
        raise Damaged(path, "carries no hash (written by another tool or an older genaiops)")
    if data[SEAL] != content_digest(data):
        raise Damaged(path, "its content does not match its hash (changed after it was written)")
    return data


def verify_file(path: Path, expected: str) -> None:
    """Damaged unless the file's bytes hash to `expected` ("sha256:<hex>")."""
    from genaiops.hashing import hash_file

    try:
        actual = hash_file(path)
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    except OSError as exc:
        raise Damaged(path, f"unreadable ({exc.strerror or exc})") from None
    if not expected:
        raise Damaged(path, "its record lists no hash for it")
    if actual != expected:
        raise Damaged(path, f"its bytes hash to {actual[:19]}..., its record says {expected[:19]}...")


def shown(workspace, path: Path) -> str:
    """A path as messages name it: relative to the repository when it is inside."""
    try:
        return str(Path(path).relative_to(workspace.repo_root))
    except ValueError:
        return str(path)


def quarantine(workspace, damage: Damaged, *others: Path, recovery: str) -> Path:
    """Move the damaged file (and files that belong with it) into a fresh quarantine folder,
    and say so: what was damaged, how, where it went, what genaiops does about it."""
    folder = workspace.quarantine_dir / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                                         + f"-{uuid.uuid4().hex[:8]}")
    for path in (damage.path, *others):
        path = Path(path)
        try:
            relative = path.resolve().relative_to(workspace.root)
        except ValueError:
            relative = Path(path.name)
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:  # not there, or another process moved it first
            continue
        except OSError:  # another file system: copy, then remove
            import shutil

            shutil.move(str(path), str(target))
    notice(f"{shown(workspace, damage.path)} is damaged ({damage.reason}): moved to "
           f"{shown(workspace, folder)}; {recovery}")
    return folder
